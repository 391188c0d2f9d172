"""Preference data: the generator's own samples on training prompts, labelled three ways, as pairs.

For each of M training prompts (the world's caption grammar, ``shapes.sample_prompt``: the held-out
colour–shape bindings of ``heldout_metadata.jsonl`` are never drawn) the generator decodes S images at
the verification data's sampling temperature (1.5: more failures to learn from). Every image keeps its
tokens (DPO's log-likelihood is over tokens) and gets three labels:

- ``orm``: P(yes) of the fine-tuned outcome reward model of notebook 06,
- ``parm``: P(yes) of PARM's selection head (the same question, the PARM checkpoint),
- ``oracle``: the exact evaluator's verdict (GenEval's rules) — the ceiling, and the yardstick of the
  learned labels' noise.

A *pair* is a "yes" image x⁺ and a "no" image x⁻ of one prompt (a learned label says yes at p ≥ ½);
prompts whose S images all get the same label give none. Each prompt gives at most ``pairs_per_prompt``
pairs, every yes and every no used as evenly as the counts allow. The data is built once per
(spec, generator checkpoint) and cached under ``runs/preference_data/``.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from cotlab import geneval
from cotlab.harness import checkpoint_card, load_checkpoint
from cotlab.io import RUNS_DIR, atomic_output
from cotlab.metrics import to_uint8
from cotlab.sampling import path_seed, sample
from cotlab.shapes import is_heldout, sample_prompt

LABELS = ("orm", "parm", "oracle")


@dataclass(frozen=True)
class PreferenceSpec:
    """What to sample and label. ``seed`` differs from the reward models' data (seed 0), so the
    prompts and images DPO learns from are new to the labelling reward model."""
    generator: str = "maskgit"
    prompts: int = 600  # M
    samples: int = 8  # S per prompt
    sample_temperature: float = 1.5
    steps: int = 8
    cfg: float = 3.0
    seed: int = 1


@torch.no_grad()
def build(spec: PreferenceSpec, progress: bool = True, batch_prompts: int = 16) -> dict:
    """The labelled samples: ``tokens`` (M·S, N) long, ``caption`` and ``meta`` (M·S,), ``prompt``
    (M·S,) the prompt index, and one (M·S,) float tensor per label of ``LABELS`` (1.0/0.0 for the oracle)."""
    generator = load_checkpoint(spec.generator)
    judges = {name: load_checkpoint(name) for name in ("orm", "parm")}
    rng = np.random.default_rng(spec.seed)
    metas = [sample_prompt(rng) for _ in range(spec.prompts)]
    assert not any(is_heldout(m) for m in metas)  # sample_prompt draws training prompts only
    out: dict[str, list] = {"tokens": [], "caption": [], "meta": [], "prompt": [], **{k: [] for k in LABELS}}
    for start in tqdm(range(0, len(metas), batch_prompts), desc="preference data", disable=not progress,
                      mininterval=5):
        chunk = metas[start:start + batch_prompts]
        captions = [m["prompt"] for m in chunk for _ in range(spec.samples)]
        seeds = [path_seed(spec.seed, start + i, j) for i in range(len(chunk)) for j in range(spec.samples)]
        result = sample(generator, captions, seeds, steps=spec.steps, cfg=spec.cfg,
                        sample_temperature=spec.sample_temperature)
        rows = [m for m in chunk for _ in range(spec.samples)]
        out["tokens"].append(result.tokens.cpu())
        out["caption"] += captions
        out["meta"] += rows
        out["prompt"] += [start + i for i in range(len(chunk)) for _ in range(spec.samples)]
        for name, judge in judges.items():
            out[name].append(judge.judge(result.images, captions)["yes"])
        out["oracle"].append(torch.tensor([float(geneval.judge(x, m)[0])
                                           for x, m in zip(to_uint8(result.images), rows)]))
    return {"tokens": torch.cat(out["tokens"]), "caption": out["caption"], "meta": out["meta"],
            "prompt": torch.tensor(out["prompt"]), **{k: torch.cat(out[k]).float() for k in LABELS},
            "spec": asdict(spec)}


def load_or_build(spec: PreferenceSpec, progress: bool = True) -> dict:
    """``build(spec)``, cached in runs/preference_data/ under a hash of the spec and the generator's
    and judges' checkpoints (a retrained one gets new data). Building leaves the global random stream
    as it was (loading the models draws initial weights), so a model that trains on the data trains the
    same whether the data was cached or built first."""
    cards = [checkpoint_card(name) for name in (spec.generator, "orm", "parm")]
    key = hashlib.sha1(json.dumps([asdict(spec)] + [[c.get("date"), c.get("steps")] for c in cards],
                                  sort_keys=True).encode()).hexdigest()[:12]
    path = RUNS_DIR / "preference_data" / f"{spec.generator.replace('/', '_')}-{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    with torch.random.fork_rng():
        data = build(spec, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(data, tmp)
    return data


def pairs(data: dict, label: str = "orm", pairs_per_prompt: int = 8, seed: int = 0) -> torch.Tensor:
    """(P, 2) long: rows (chosen, rejected) into ``data``, by ``label`` (one of ``LABELS``): per
    prompt, its yes images against its no images, cycled so each is used as evenly as the counts allow,
    at most ``pairs_per_prompt``; prompts with only yes or only no images give none."""
    if label not in LABELS:
        raise ValueError(f"unknown preference label '{label}': choose one of {', '.join(LABELS)}")
    yes = data[label] >= 0.5  # (M·S,)
    rng = np.random.default_rng(seed)
    out = []
    for p in torch.unique(data["prompt"]).tolist():
        rows = (data["prompt"] == p).nonzero()[:, 0].numpy()
        good, bad = rng.permutation(rows[yes[rows].numpy()]), rng.permutation(rows[~yes[rows].numpy()])
        if len(good) and len(bad):
            g, b = len(good), len(bad)  # every (yes, no) once, in diagonals: each diagonal uses each image at most once
            order = sorted(itertools.product(range(g), range(b)),
                           key=lambda ij: ((ij[1] - ij[0]) % b if g <= b else (ij[0] - ij[1]) % g, ij))
            out += [(good[i], bad[j]) for i, j in order[:pairs_per_prompt]]
    return torch.tensor(np.array(out, dtype=np.int64).reshape(-1, 2))


def label_agreement(data: dict) -> dict[str, float]:
    """The share of images on which each learned label (yes at p ≥ ½) agrees with the exact evaluator;
    and the share the evaluator calls correct."""
    truth = data["oracle"] >= 0.5
    return {"correct_share": float(truth.float().mean()),
            **{f"{name}_agreement": float(((data[name] >= 0.5) == truth).float().mean()) for name in ("orm", "parm")}}
