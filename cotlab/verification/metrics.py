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
from cotlab.verification.data import DataSpec, load_or_build, prompts


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


def within_prompt_auroc(scores, labels) -> dict:
    """How well a verifier ranks one prompt's samples against each other — what choosing among N
    needs: the mean, over the prompts whose samples are neither all right nor all wrong (``prompts``
    of them), of the AUROC among that prompt's samples, for scores and labels (P, N). An AUROC pooled
    over all samples also rewards telling hard prompts from easy ones, which best-of-N cannot use.
    95 % interval: a bootstrap over those prompts."""
    s, y = torch.as_tensor(np.asarray(scores, float)), torch.as_tensor(np.asarray(labels, bool)).long()  # (P, N)
    mixed = torch.nonzero((y.sum(1) > 0) & (y.sum(1) < y.shape[1])).flatten().tolist()
    per_prompt = np.array([_auroc(s[i], y[i]) for i in mixed])  # (P',)
    if not mixed:
        return {"auroc": float("nan"), "interval": [float("nan")] * 2, "prompts": 0}
    return {"auroc": float(per_prompt.mean()), "interval": bootstrap_interval(np.mean, per_prompt),
            "prompts": len(mixed)}


def clip_probability(clip, images: torch.Tensor, captions: list[str], batch_size: int = 512) -> torch.Tensor:
    """The zero-shot verifier's score in [0, 1]: CLIPScore / 100 = max(cos(u, v), 0)."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    return torch.cat([clip.score(images[i:i + batch_size], captions[i:i + batch_size]).cpu() / 100
                      for i in range(0, len(images), batch_size)])


def heldout_quality(model, profile: str) -> dict[str, float]:
    """A trained reward model's quality on new samples of its generator at test-time temperature:
    its ``yes`` against the verdicts of final images, and for PRM and PARM against the path outcome
    on step images (PARM: ``potential``) and, for PARM, ``clear`` against the measured clarity.

    The paths are unseen in training (another seed), most prompt texts are not: the prompts are drawn
    as the training prompts are, from a grammar with few (4 single-object ones), so in the cpu profile
    102 of the 120 are also training prompts (``seen_prompt_share``). The same metrics on the others
    alone — prompts no training example has, position and color_attr ones — are the ``unseen_*``
    keys, over ``unseen_prompts`` prompts."""
    smoke = profile == "smoke"
    spec = DataSpec(generator=model.config.generator, prompts=6 if smoke else 120, paths=2 if smoke else 4,
                    rollout_prompts=3 if smoke else 40, rollout_paths=1 if smoke else 2,
                    rollouts=2 if smoke else 4, sample_temperature=1.0, seed=1)
    data = load_or_build(spec, progress=False)
    trained = {m["prompt"] for m in prompts(model.config.data_spec())}
    seen = [m["prompt"] in trained for m in prompts(spec)]
    out = {"seen_prompt_share": float(np.mean(seen)), "unseen_prompts": len(seen) - sum(seen)}
    out.update(_quality(model, data["finals"], data["steps"]))
    unseen = {name: _rows(data[name], [c not in trained for c in data[name]["caption"]]) for name in ("finals", "steps")}
    if len(unseen["finals"]["caption"]):
        out.update({f"unseen_{k}": v for k, v in _quality(model, unseen["finals"], unseen["steps"]).items()})
    return out


def _quality(model, finals: dict, steps: dict) -> dict[str, float]:
    """``heldout_quality``'s final_*, step_* and clear_* metrics on these final and step images."""
    out = {}
    yes = model.judge(finals["image"], finals["caption"])["yes"]
    out.update({f"final_{k}": v for k, v in classification(yes, finals["correct"]).items()})
    if model.config.task == "orm" or not len(steps["caption"]):
        return out
    judged = model.judge(steps["image"], steps["caption"], steps["progress"].float())
    step_score = judged["potential" if model.config.task == "parm" else "yes"]
    out.update({f"step_{k}": v for k, v in classification(step_score, steps["final"]).items()})
    if model.config.task == "parm":
        out.update({f"clear_{k}": v for k, v in classification(judged["clear"], steps["clear"]).items()})
    return out


def _rows(table: dict, keep: list[bool]) -> dict:
    """The rows ``keep`` of a verifier-data table (tensors and lists alike)."""
    mask = torch.tensor(keep, dtype=torch.bool)
    return {k: v[mask] if torch.is_tensor(v) else [x for x, kept in zip(v, keep) if kept] for k, v in table.items()}
