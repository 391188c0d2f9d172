"""How ``cotlab train`` trains and judges the next-X models of notebook 03.

``xar`` is the shipped model: the cell entity (2×2 cells of the 4×4 latent, 4 AR steps) with noisy
context learning, 20 minutes on two CPU cores. The ablation gives every variant the same wall time,
``ABLATION_MINUTES``: the five entities with noisy context learning, and the cell entity with teacher
forcing. Each variant's steps are what fit that time at its cost per step, so every cosine schedule
ends: a step of 128 sequences takes about 0.53 s with noisy context (16 tokens), 1.3× that for the
scale entity (21 tokens) and 2× with teacher forcing (a clean and a noisy copy: 32 tokens). All train
on cached ``dcae_f8`` latents (``cotlab.latents.CachedLatents``) and are judged with GenEval on the
benchmark prompts × 4 (smoke: every 40th prompt, one sample), sampled as ``XAR.paths`` does by
default: 20 Euler–Maruyama steps per entity, CFG ramped to 5.
"""
from __future__ import annotations

from cotlab.harness import Recipe
from cotlab.latents import CachedLatents
from cotlab.sampling import benchmark_metrics
from cotlab.xar.model import XAR, XARConfig

ABLATION_MINUTES = 5.0


def recipe(name: str, description: str, cpu_steps: int | None = None, **overrides) -> Recipe:
    """A next-X recipe: ``XAR`` with ``XARConfig.for_profile(profile, **overrides)``, on cached latents.
    An ablation variant gives ``cpu_steps``: in the cpu profile it trains that many steps within
    ``ABLATION_MINUTES``; the other profiles keep their own steps (smoke: a handful; gpu: the same steps
    for every variant, not the same time)."""
    def config(profile: str) -> XARConfig:
        budget = dict(max_steps=cpu_steps, max_minutes=ABLATION_MINUTES) if cpu_steps and profile == "cpu" else {}
        return XARConfig.for_profile(profile, **overrides, **budget)

    def datamodule(profile: str, seed: int) -> CachedLatents:
        c = config(profile)
        return CachedLatents(c.autoencoder, c.text_encoder, c.cache_scenes, c.batch_size, seed)

    return Recipe(name, lambda profile: XAR(config(profile)), datamodule, benchmark_metrics, description)


XAR_RECIPE = recipe("xar", "next-cell prediction (2×2 cells, 4 AR steps) with noisy context learning, 20 min")

# the ablation: the same wall time each (cpu_steps: what fits ABLATION_MINUTES at the variant's cost per step)
XAR_TOKEN = recipe("xar_token", "next-token (16 AR steps), noisy context, the ablation's budget",
                   entity="token", cpu_steps=560)
XAR_CELL = recipe("xar_cell", "next-cell (4 AR steps), noisy context, the ablation's budget",
                  entity="cell", cpu_steps=560)
XAR_SUBSAMPLE = recipe("xar_subsample", "next-subsample (4 strided groups), noisy context, the ablation's budget",
                       entity="subsample", cpu_steps=560)
XAR_SCALE = recipe("xar_scale", "next-scale (1×1, 2×2, 4×4), noisy context, the ablation's budget",
                   entity="scale", cpu_steps=430)
XAR_IMAGE = recipe("xar_image", "the whole image in one step (plain flow matching), the ablation's budget",
                   entity="image", cpu_steps=560)
XAR_CELL_TF = recipe("xar_cell_tf", "next-cell with teacher forcing (clean context), the ablation's budget",
                     entity="cell", noisy_context=False, cpu_steps=280)
ABLATION = ("xar_token", "xar_cell", "xar_subsample", "xar_scale", "xar_image", "xar_cell_tf")
