"""``cotlab bench tokenizers``: every shipped tokenizer side by side on the same scenes.

Rate (tokens and bits per image), quality (PSNR, SSIM, evaluator agreement, Shapes-FD), codebook use
and throughput, one row per tokenizer (two for a hybrid: discrete only, and discrete + residual).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm.auto import tqdm

from cotlab.bench import Bench, best_time, load_shipped, only_option, parse_names
from cotlab.errors import CotlabError
from cotlab.harness import checkpoint_card, load_checkpoint
from cotlab.metrics import device_of
from cotlab.registry import RECIPES, recipes_in
from cotlab.shapes import World, make_batch
from cotlab.stats import describe_difference
from cotlab.tokenizers.metrics import evaluate_tokenizer, residual_gain, variants
from cotlab.options import count

TOKENIZERS = recipes_in("cotlab.tokenizers")  # every recipe of this house: vq_f8, vq_f4, … hybrid_f8_alternating


def throughput(model, images: torch.Tensor, repeats: int = 3, **options) -> dict[str, float | None]:
    """Images per second of ``reconstruct`` and of its two halves on one batch, after a warm-up.

    Encoding is ``encode_indices`` (discrete) or ``encode`` (continuous); decoding is timed as
    reconstruct − encode, since ``reconstruct`` is encode then decode. Each time is the best of
    ``repeats`` (the least disturbed by other work on the machine). Without an encode method only
    reconstruct is timed.
    """
    images = images.to(device_of(model))
    encode = getattr(model, "encode_indices", None) or getattr(model, "encode", None)
    sync = torch.cuda.synchronize if images.is_cuda else None
    with torch.no_grad():
        t_rec = best_time(lambda: model.reconstruct(images, **options), repeats, sync)
        t_enc = best_time(lambda: encode(images), repeats, sync) if encode is not None else None
    B = len(images)
    return {"reconstruct_per_s": B / t_rec,
            "encode_per_s": B / t_enc if t_enc else None,
            "decode_per_s": B / (t_rec - t_enc) if t_enc and t_rec > t_enc else None}


def bench_tokenizers(names: list[str] | None = None, n: int = 500, seed: int = 0, world: World = World(),
                     batch_size: int = 256) -> dict:
    """Every shipped tokenizer side by side (``compare_tokenizers``). Named tokenizers must have
    checkpoints; without ``names``, the missing ones are skipped with a note."""
    unknown = [name for name in names or () if name not in RECIPES and "/" not in name]
    if unknown:
        raise CotlabError(f"unknown tokenizer {unknown[0]!r}: choose from {', '.join(TOKENIZERS)}, "
                          "or give a checkpoint folder")
    models = load_shipped(names, TOKENIZERS, "tokenizer")
    return compare_tokenizers(models, n, seed, world, batch_size)


def compare_tokenizers(models: dict, n: int = 500, seed: int = 0, world: World = World(),
                       batch_size: int = 256, progress: bool = True) -> dict:
    """Tokenizers ``{name: model}`` side by side on the same ``n`` scenes: tokens and bits per image,
    PSNR, SSIM, evaluator agreement, Shapes-FD (each with its 95 % interval), codebook usage and
    perplexity, and encode/decode throughput on one batch of ``batch_size``. A hybrid gives two rows,
    discrete-only and discrete+residual, and the residual's paired PSNR gain. Returns
    ``{"rows": [...], "residual_gain": {name: ...}, ...}``."""
    try:
        classifier = load_checkpoint("shapes_classifier")
        accuracy = checkpoint_card("shapes_classifier")["metrics"].get("cell_accuracy")
    except FileNotFoundError as e:
        classifier, accuracy = None, None
        print(f"no Shapes-FD: {e}")
    images = make_batch(world, np.random.default_rng(seed + 1), batch_size)["image"]  # for timing
    rows, gains = [], {}
    for name, model in tqdm(models.items(), desc="tokenizer bench", mininterval=2, disable=not progress):
        for label, options in variants(model).items():
            metrics = evaluate_tokenizer(model, n, seed, world, classifier, **options)
            rows.append({"tokenizer": f"{name} ({label})" if label else name, "checkpoint": name,
                         **options, **metrics, **throughput(model, images, **options)})
        if len(variants(model)) == 2:
            gains[name] = residual_gain(model, n, seed, world)
    return {"n": n, "seed": seed, "timing_batch": batch_size,
            "shapes_fd_classifier": None if classifier is None else
            {"checkpoint": "shapes_classifier", "cell_accuracy": accuracy},
            "rows": rows, "residual_gain": gains}


def format_tokenizers(result: dict) -> str:
    """The bench's table, the residual's gain for each hybrid, and how Shapes-FD was measured."""
    def cell(row, key, fmt):
        value = row.get(key)
        if value is None:
            return "—"
        interval = row.get("interval", {}).get(key)
        return format(value, fmt) + (f" [{interval[0]:{fmt}}, {interval[1]:{fmt}}]" if interval else "")

    columns = [("tokens", "tokens_per_image", "d"), ("bits", "bits_per_image", ".0f"),
               ("PSNR dB", "psnr", ".2f"), ("SSIM", "ssim", ".4f"), ("agreement", "agreement", ".3f"),
               ("Shapes-FD", "shapes_fd", ".4f"), ("usage", "usage", ".2f"),
               ("perplexity", "perplexity", ".1f"), ("encode img/s", "encode_per_s", ".0f"),
               ("decode img/s", "decode_per_s", ".0f")]
    lines = ["| tokenizer | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    lines += [f"| {r['tokenizer']} | " + " | ".join(cell(r, key, fmt) for _, key, fmt in columns) + " |"
              for r in result["rows"]]
    by_checkpoint = {}
    for r in result["rows"]:
        if "residual" in r:
            by_checkpoint.setdefault(r["checkpoint"], {})[r["residual"]] = r
    for name, pair in by_checkpoint.items():
        d, c = pair[False], pair[True]
        gain = result["residual_gain"][name]
        lines.append(f"\n{name}: the residual adds {describe_difference(gain['psnr'], gain['interval'], 2)} dB PSNR "
                     f"(paired, per scene); agreement {d['agreement']:.3f} → {c['agreement']:.3f}; "
                     f"bits ×{c['bits_per_image'] / d['bits_per_image']:.1f}")
    fd = result["shapes_fd_classifier"]
    accuracy = "?" if fd is None or fd["cell_accuracy"] is None else f"{fd['cell_accuracy']:.4f}"
    lines.append(f"\n{result['n']} scenes (seed {result['seed']}); 95 % intervals: bootstrap over scenes (PSNR, SSIM, "
                 f"Shapes-FD), Wilson's (agreement). Throughput on one batch of {result['timing_batch']}, decode = "
                 "reconstruct − encode. "
                 + ("Shapes-FD: not computed (no shapes_classifier checkpoint)." if fd is None else
                    f"Shapes-FD in the features of shapes_classifier (cell accuracy {accuracy}); "
                    "not comparable to Inception FID."))
    return "\n".join(lines)


# --- the command line: cotlab bench tokenizers -------------------------------------------------
def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=count, default=500, help="number of scenes (default: 500)")
    only_option(parser, "tokenizers")


def _run(args: argparse.Namespace) -> dict:
    return bench_tokenizers(parse_names(args.only), n=args.n, seed=args.seed)


BENCH = Bench(_arguments, _run, format_tokenizers, "Benchmark every shipped tokenizer checkpoint on the same N scenes: tokens and "
              "bits per image, PSNR, SSIM, evaluator agreement, Shapes-FD, codebook usage and perplexity, "
              "encode and decode images/s. A hybrid gives a discrete-only and a discrete+residual row. "
              "Missing checkpoints are skipped with a note, unless named with --only.")
