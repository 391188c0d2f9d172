"""How ``cotlab train`` trains and judges the models of notebook 04.

``sana`` is the linear DiT on ``dcae_f8`` latents (4×4×32: 16 tokens), ``sana_f4`` the same model on
``dcae_f4`` latents (8×8×8: 64 tokens), given the same wall time on two CPU cores: a step on 64 tokens
costs 2.7× one on 16, so it takes 1,100 steps to sana's 3,000 (the schedule ends in both). Both train
by flow matching on Shapes batches and are judged
with GenEval on the benchmark prompts × 4 (smoke: every 40th prompt, one sample) with the defaults of
``cotlab generate``: 20 flow-Euler steps, CFG 3.
"""
from __future__ import annotations

from cotlab.dit.model import SanaDiT
from cotlab.harness import Recipe
from cotlab.sampling import benchmark_metrics

SANA = Recipe.of("sana", SanaDiT, "SANA's linear DiT over dcae_f8 latents (16 tokens × 32 channels), flow matching",
                 benchmark_metrics)
SANA_F4 = Recipe.of("sana_f4", SanaDiT, "SANA's linear DiT over dcae_f4 latents (64 tokens × 8 channels), flow matching",
                    benchmark_metrics, autoencoder="dcae_f4",
                    cpu=dict(max_steps=1100))  # the steps that fit sana's 30 minutes on two cores
