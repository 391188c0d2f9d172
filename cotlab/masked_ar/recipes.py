"""How ``cotlab train`` trains and judges the models of notebook 02.

Each generator recipe trains a ``MaskedAR`` on Shapes batches and judges it with GenEval on the
benchmark prompts, 4 samples each (smoke: every 40th prompt, 1 sample), with the decoding defaults
of ``cotlab generate`` (MaskGIT: 8 steps; CFG 3). DC-AR's residual head trains on the same batches;
``cotlab bench hybrid`` measures what it adds.
"""
from __future__ import annotations

from cotlab.harness import Recipe
from cotlab.masked_ar.dcar import ResidualHead
from cotlab.masked_ar.model import MaskedAR
from cotlab.sampling import benchmark_metrics as evaluate


MASKGIT = Recipe.of("maskgit", MaskedAR, "MaskGIT over the 16 vq_f8 tokens, conditioned on the CLIP text encoder",
                    evaluate)
RASTER = Recipe.of("raster_ar", MaskedAR, "raster-order AR baseline over the 16 vq_f8 tokens", evaluate,
                   order="raster")
MASKGIT_HYBRID = Recipe.of("maskgit_hybrid", MaskedAR, "MaskGIT over the 16 discrete tokens of hybrid_f8 "
                           "(DC-AR's transformer; cotlab.masked_ar.dcar adds the residual)", evaluate,
                           tokenizer="hybrid_f8")
MASKGIT_F4 = Recipe.of("maskgit_f4", MaskedAR, "MaskGIT over the 64 vq_f4 tokens", evaluate, tokenizer="vq_f4")
RASTER_F4 = Recipe.of("raster_ar_f4", MaskedAR, "raster-order AR baseline over the 64 vq_f4 tokens", evaluate,
                      tokenizer="vq_f4", order="raster")
DCAR_HEAD = Recipe.of("dcar_head", ResidualHead, "DC-AR's residual head: flow matching of hybrid_f8's residual from "
                      "maskgit_hybrid's hidden states")
