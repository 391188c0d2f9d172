"""How good a verifier is, against the exact evaluator: precision, recall and AUROC.

With scores s_i, labels y_i ∈ {0, 1} and the decision s_i ≥ θ (θ = 0.5 for a probability):

    precision = #{s ≥ θ, y = 1} / #{s ≥ θ}        recall = #{s ≥ θ, y = 1} / #{y = 1}
    AUROC     = P(s_pos > s_neg) + ½ P(s_pos = s_neg)   (the area under the ROC curve: any threshold, ranks only)

On final images y is GenEval's verdict; on step images it is whether the *path* ends correct — what
a verifier looking at step t must foresee.
"""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import (binary_accuracy, binary_auroc, binary_precision,
                                                   binary_recall)

from cotlab.stats import bootstrap_interval, proportion_interval
from cotlab.verification.data import DataSpec, load_or_build


def classification(scores, labels, threshold: float = 0.5, intervals: bool = False) -> dict:
    """precision, recall, accuracy at ``threshold`` (the decision s ≥ θ), AUROC, and the share of
    positives; counted by torchmetrics. Precision without a positive decision, recall without a
    positive label and AUROC with a single class are undefined: nan. With ``intervals``, also their
    95 % intervals under ``interval``: Wilson's for precision and recall (shares of the decided and
    of the positives), a bootstrap over images for AUROC."""
    s, y = torch.as_tensor(np.asarray(scores, float)), torch.as_tensor(np.asarray(labels, bool)).long()
    said = (s >= threshold).float()  # the decision, then counted as torchmetrics counts
    nan = float("nan")
    result = {"precision": binary_precision(said, y).item() if said.any() else nan,
              "recall": binary_recall(said, y).item() if y.any() else nan,
              "accuracy": binary_accuracy(said, y).item(),
              "auroc": _auroc(s, y),
              "positives": y.float().mean().item()}
    if intervals:
        hits = int((said * y).sum())
        result["interval"] = {
            "precision": proportion_interval(hits, int(said.sum())) if said.any() else [nan, nan],
            "recall": proportion_interval(hits, int(y.sum())) if y.any() else [nan, nan],
            "auroc": bootstrap_interval(_auroc, s, y, resamples=500)}
    return result


def _auroc(s: torch.Tensor, y: torch.Tensor) -> float:
    return binary_auroc(s, y).item() if 0 < y.sum() < len(y) else float("nan")


def clip_probability(clip, images: torch.Tensor, captions: list[str], batch_size: int = 512) -> torch.Tensor:
    """The zero-shot verifier's score in [0, 1]: CLIPScore / 100 = max(cos(u, v), 0)."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    return torch.cat([clip.score(images[i:i + batch_size], captions[i:i + batch_size]).cpu() / 100
                      for i in range(0, len(images), batch_size)])


def heldout_quality(model, profile: str) -> dict[str, float]:
    """A trained reward model's quality on fresh samples of its generator at test-time temperature
    (prompts and paths unseen in training): its ``yes`` against the verdicts of final images, and
    for PRM and PARM against the path outcome on step images (PARM: ``potential``) and, for PARM,
    ``clear`` against the measured clarity."""
    smoke = profile == "smoke"
    spec = DataSpec(generator=model.config.generator, prompts=6 if smoke else 120, paths=2 if smoke else 4,
                    rollout_prompts=3 if smoke else 40, rollout_paths=1 if smoke else 2,
                    rollouts=2 if smoke else 4, sample_temperature=1.0, seed=1)
    data = load_or_build(spec, progress=False)
    finals, steps = data["finals"], data["steps"]
    out = {}
    yes = model.judge(finals["image"], finals["caption"])["yes"]
    out.update({f"final_{k}": v for k, v in classification(yes, finals["correct"]).items()})
    if model.config.task == "orm":
        return out
    judged = model.judge(steps["image"], steps["caption"], steps["progress"].float())
    step_score = judged["potential" if model.config.task == "parm" else "yes"]
    out.update({f"step_{k}": v for k, v in classification(step_score, steps["final"]).items()})
    if model.config.task == "parm":
        out.update({f"clear_{k}": v for k, v in classification(judged["clear"], steps["clear"]).items()})
    return out
