"""What the command line finds by name, each imported only when asked for: the trainable models of
``cotlab train NAME`` (``Recipe``) and the benchmarks of ``cotlab bench NAME`` (``cotlab.bench.Bench``).
A topic adds its entries here and touches no other topic's files."""

from __future__ import annotations

import importlib

from cotlab.errors import CotlabError

# name -> "module:attribute" of its Recipe
RECIPES = {
    "clip": "cotlab.clip:RECIPE",
    "shapes_classifier": "cotlab.classifier:RECIPE",
    "vq_f8": "cotlab.tokenizers.recipes:VQ_F8",
    "vq_f4": "cotlab.tokenizers.recipes:VQ_F4",
    "vq_f8_plain": "cotlab.tokenizers.recipes:VQ_F8_PLAIN",
    "dcae_f8": "cotlab.tokenizers.recipes:DCAE_F8",
    "dcae_f4": "cotlab.tokenizers.recipes:DCAE_F4",
    "dcae_f8_noshortcut": "cotlab.tokenizers.recipes:DCAE_F8_NOSHORTCUT",
    "hybrid_f8": "cotlab.tokenizers.recipes:HYBRID_F8",
    "hybrid_f8_alternating": "cotlab.tokenizers.recipes:HYBRID_F8_ALTERNATING",
    "maskgit": "cotlab.masked_ar.recipes:MASKGIT",
    "raster_ar": "cotlab.masked_ar.recipes:RASTER",
    "maskgit_f4": "cotlab.masked_ar.recipes:MASKGIT_F4",
    "raster_ar_f4": "cotlab.masked_ar.recipes:RASTER_F4",
    "maskgit_hybrid": "cotlab.masked_ar.recipes:MASKGIT_HYBRID",
    "dcar_head": "cotlab.masked_ar.recipes:DCAR_HEAD",
    "orm": "cotlab.verification.recipes:ORM",
    "prm": "cotlab.verification.recipes:PRM",
    "parm": "cotlab.verification.recipes:PARM",
    "sana": "cotlab.dit.recipes:SANA",
    "sana_f4": "cotlab.dit.recipes:SANA_F4",
    "sprint_teacher": "cotlab.sprint.recipes:SPRINT_TEACHER",
    "sprint": "cotlab.sprint.recipes:SPRINT",
    "sprint_scm": "cotlab.sprint.recipes:SPRINT_SCM",
    "sprint_ladd": "cotlab.sprint.recipes:SPRINT_LADD",
    "xar": "cotlab.xar.recipes:XAR_RECIPE",
    "xar_token": "cotlab.xar.recipes:XAR_TOKEN",
    "xar_cell": "cotlab.xar.recipes:XAR_CELL",
    "xar_subsample": "cotlab.xar.recipes:XAR_SUBSAMPLE",
    "xar_scale": "cotlab.xar.recipes:XAR_SCALE",
    "xar_image": "cotlab.xar.recipes:XAR_IMAGE",
    "xar_cell_tf": "cotlab.xar.recipes:XAR_CELL_TF",
    "dpo": "cotlab.preference.recipes:DPO_RECIPE",
    "dpo_two_masks": "cotlab.preference.recipes:DPO_TWO_MASKS",
    "it_dpo": "cotlab.preference.recipes:IT_DPO",
    "dpo_guidance_released": "cotlab.preference.recipes:DPO_GUIDANCE_RELEASED",
    "dpo_guidance": "cotlab.preference.recipes:DPO_GUIDANCE",
    "grpo": "cotlab.preference.recipes:GRPO_RECIPE",
    "grpo_parm": "cotlab.preference.recipes:GRPO_PARM",
    "grpo_oracle": "cotlab.preference.recipes:GRPO_ORACLE",
}


BENCHES = {  # name -> ("module:attribute" of its Bench, one line of help)
    "evaluator": ("cotlab.bench:EVALUATOR", "the GenEval evaluator's speed and accuracy against the renderer's truth"),
    "clip": ("cotlab.clip:BENCH", "the shipped CLIP's caption accuracy per task: true caption against a minimally changed one"),
    "tokenizers": ("cotlab.tokenizers.bench:BENCH",
                   "the shipped tokenizers side by side: rate, quality, codebook use, speed"),
    "decoding": ("cotlab.masked_ar.bench:DECODING",
                 "masked decoding in K steps against raster AR: score, forward passes, speed"),
    "hybrid": ("cotlab.masked_ar.bench:HYBRID", "DC-AR: the hybrid's residual head against its discrete tokens alone"),
    "attention": ("cotlab.dit.bench:ATTENTION",
                  "linear attention against softmax (SDPA) over 256 … 64k tokens: time, peak memory, slope, crossover"),
    "dit": ("cotlab.dit.bench:DIT",
            "the linear DiTs: flow Euler vs Flow-DPM-Solver, f8 vs f4 latents, training throughput, held-out bindings"),
    "throughput": ("cotlab.dit.bench:THROUGHPUT",
                   "deep compression in training: one DiT training step on f8 against f4 latents, encoding and step timed apart"),
    "scaling": ("cotlab.dit.bench:SCALING",
                "inference-time scaling of the DiT: best-of-N by CLIP, ORM and the oracle, top-1 and tournament"),
    "growth": ("cotlab.dit.bench:GROWTH",
               "SANA 1.5's depth growth against training from scratch, and block-importance pruning with a short fine-tune"),
    "sampling": ("cotlab.sprint.bench:SAMPLING",
                 "SANA-Sprint: the teacher at 2-32 steps against the students at 1, 2, 4: score, latency, the ablation"),
    "xar": ("cotlab.xar.bench:XAR_BENCH",
            "next-X prediction: the five entities and teacher forcing trained for equal time, the exposure-bias curve"),
    "verification": ("cotlab.verification.bench:BENCH",
                     "ORM, PRM, PARM, PARM++ and the oracle: GenEval, cost, scaling, verifier quality"),
    "capstone": ("cotlab.preference.bench:BENCH",
                 "verification, DPO, iterative DPO and GRPO alone and together: the paper's table, benchmark and held-out"),
    "mutation": ("cotlab.mutation:BENCH",
                 "how well the tests guard the numbers: mutmut's share of killed mutants per number-making module"),
}


def recipes_in(package: str) -> tuple[str, ...]:
    """The names of the recipes defined under ``package`` (e.g. ``"cotlab.tokenizers"``), in table order."""
    return tuple(name for name, target in RECIPES.items() if target.startswith(package + "."))


def _load(target: str):
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def get_bench(name: str):
    """The ``Bench`` registered as ``name``."""
    if name not in BENCHES:
        raise CotlabError(f"unknown benchmark '{name}': choose one of {', '.join(BENCHES)}")
    return _load(BENCHES[name][0])


def get_recipe(name: str):
    """The ``Recipe`` registered as ``name``."""
    if name not in RECIPES:
        raise CotlabError(f"unknown model '{name}': choose one of {', '.join(sorted(RECIPES))}")
    return _load(RECIPES[name])
