"""How ``cotlab train`` trains and judges the tokenizers of notebook 01.

Each recipe trains its tokenizer on Shapes batches and judges it with ``evaluate_tokenizer`` on the
config's ``eval_n`` scenes: PSNR, SSIM, evaluator agreement, tokens and bits per image, and for
discrete tokens codebook usage and perplexity — a hybrid on both of its decoding paths.
"""
from __future__ import annotations

from cotlab.harness import Recipe
from cotlab.stats import flatten_intervals
from cotlab.tokenizers.dcae import DCAEF4Config, DCAETokenizer
from cotlab.tokenizers.hybrid import ALTERNATING, HybridTokenizer
from cotlab.tokenizers.metrics import evaluate_tokenizer, variants
from cotlab.tokenizers.vq import PLAIN, VQF4Config, VQTokenizer


def evaluate(model, profile: str | None = None) -> dict:
    """``evaluate_tokenizer`` on ``model.config.eval_n`` scenes, each interval as ``KEY_interval``; for
    a hybrid once per decoding path, with keys ``discrete_*`` and ``discrete+residual_*``."""
    metrics = {}
    for variant, options in variants(model).items():
        result = flatten_intervals(evaluate_tokenizer(model, n=model.config.eval_n, **options))
        metrics.update({f"{variant}_{key}" if variant else key: value for key, value in result.items()})
    return metrics


VQ_F8 = Recipe.of("vq_f8", VQTokenizer, "VQ tokenizer, f8 (4×4 tokens, one per grid cell), with the collapse remedies",
                  evaluate)
VQ_F4 = Recipe.of("vq_f4", VQTokenizer, "VQ tokenizer, f4 (8×8 tokens), with the collapse remedies", evaluate,
                  VQF4Config)
VQ_F8_PLAIN = Recipe.of("vq_f8_plain", VQTokenizer, "VQ tokenizer, f8 with every remedy off: shows codebook collapse",
                        evaluate, **PLAIN)
DCAE_F8 = Recipe.of("dcae_f8", DCAETokenizer, "AutoencoderDC f8: 32×32 images to 4×4×32 latents, with "
                    "space-to-channel shortcuts", evaluate)
DCAE_F4 = Recipe.of("dcae_f4", DCAETokenizer, "AutoencoderDC f4: 32×32 images to 8×8×8 latents, with "
                    "space-to-channel shortcuts", evaluate, DCAEF4Config)
DCAE_F8_NOSHORTCUT = Recipe.of("dcae_f8_noshortcut", DCAETokenizer, "AutoencoderDC f8 with every space-to-channel "
                               "shortcut switched off (the ablation)", evaluate, shortcut=False)
HYBRID_F8 = Recipe.of("hybrid_f8", HybridTokenizer, "hybrid tokenizer f8 (16 tokens + a 4×4×C residual), DC-HT's "
                      "three stages", evaluate)
HYBRID_F8_ALTERNATING = Recipe.of("hybrid_f8_alternating", HybridTokenizer, "hybrid tokenizer f8 with HART's "
                                  "recipe: alternating paths from scratch", evaluate, **ALTERNATING)
