"""The masked-AR benchmarks of notebook 02 (``cotlab bench decoding``, ``cotlab bench hybrid``).

``decoding`` puts the shipped generators side by side on the same prompts: MaskGIT decoding at
several step counts against raster-order AR — GenEval score, forward passes and images per second.
``hybrid`` measures DC-AR's residual head against the discrete tokens alone, on the same tokens.
"""
from __future__ import annotations

import argparse
import time

from cotlab.bench import Bench, load_shipped, only_option, parse_names, prompt_options, report
from cotlab.geneval import stratified_prompts
from cotlab.masked_ar.dcar import compare_residual
from cotlab.sampling import evaluate_generator
from cotlab.shapes import TAGS

GENERATORS = ("maskgit", "raster_ar", "maskgit_f4", "raster_ar_f4")  # masked and raster, at 16 and 64 tokens


# --- decoding ----------------------------------------------------------------------------------
def bench_decoding(names: list[str] | None = None, steps: tuple[int, ...] = (4, 8, 16), every: int = 4,
                   n_samples: int = 4, cfg: float = 3.0, seed: int = 0, json_path: str | None = None) -> dict:
    """``compare_decoding`` of the shipped generators (named ones must exist; without ``names``, the
    missing ones of ``GENERATORS`` are skipped with a note)."""
    return compare_decoding(load_shipped(names, GENERATORS, "generator"), steps, every, n_samples, cfg, seed,
                            json_path)


def compare_decoding(models: dict, steps: tuple[int, ...] = (4, 8, 16), every: int = 4, n_samples: int = 4,
                     cfg: float = 3.0, seed: int = 0, json_path: str | None = None) -> dict:
    """Generators ``{name: model}`` on every ``every``-th benchmark prompt (stratified by tag),
    ``n_samples`` each: a masked model once per step count in ``steps`` (at most its N tokens), a
    raster one once (N steps). Rows: GenEval overall and per tag, transformer forward passes per
    image, images/s. Printed as a table, returned, and written to ``json_path`` if given."""
    metas = stratified_prompts(every)
    rows = []
    for name, model in models.items():
        plans = [s for s in steps if s <= model.num_tokens] if model.config.order == "masked" else [None]
        for k in plans:
            options = {"cfg": cfg, **({"steps": k} if k else {})}
            start = time.perf_counter()
            summary = evaluate_generator(model, metas, n_samples, seed, progress=False, **options)
            seconds = time.perf_counter() - start
            rows.append({"generator": name, "order": model.config.order, "tokens": model.num_tokens,
                         "steps": k or model.num_tokens, "overall": summary["overall"], "tags": summary["tags"],
                         "forward_passes": summary["forward_passes"],
                         "images_per_s": len(metas) * n_samples / seconds})
    result = {"prompts": len(metas), "n_samples": n_samples, "cfg": cfg, "seed": seed, "rows": rows}
    return report(result, format_decoding, json_path)


def format_decoding(result: dict) -> str:
    lines = ["| generator | order | tokens | steps | overall | " + " | ".join(TAGS) +
             " | forward passes / image | images/s (incl. judging) |",
             "|---|---|---|---|---|" + "---|" * len(TAGS) + "---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['generator']} | {r['order']} | {r['tokens']} | {r['steps']} | {r['overall']:.3f} | "
                     + " | ".join(f"{r['tags'].get(t, float('nan')):.2f}" for t in TAGS)
                     + f" | {r['forward_passes']} | {r['images_per_s']:.0f} |")
    by_tokens: dict[int, dict] = {}
    for r in result["rows"]:
        by_tokens.setdefault(r["tokens"], {}).setdefault(r["order"], []).append(r)
    for N, orders in sorted(by_tokens.items()):
        if "masked" in orders and "raster" in orders:
            raster = orders["raster"][0]
            for m in orders["masked"]:
                lines.append(f"{N} tokens, masked in {m['steps']} steps vs raster: overall "
                             f"{m['overall'] - raster['overall']:+.3f}, "
                             f"{raster['forward_passes'] / m['forward_passes']:.1f}× fewer forward passes")
    lines.append(f"\n{result['prompts']} prompts (every tag) × {result['n_samples']} samples, cfg {result['cfg']}, "
                 f"seed {result['seed']}.")
    return "\n".join(lines)


def _decoding_arguments(parser: argparse.ArgumentParser) -> None:
    only_option(parser, "generators")
    parser.add_argument("--steps", default="4,8,16", help="step counts for masked models (default: 4,8,16)")
    prompt_options(parser, every=4, prompts=139)


def _decoding_run(args: argparse.Namespace) -> dict:
    return bench_decoding(parse_names(args.only), steps=tuple(int(k) for k in args.steps.split(",")), every=args.every,
                          n_samples=args.n_samples, cfg=args.cfg, seed=args.seed, json_path=args.json)


DECODING = Bench(_decoding_arguments, _decoding_run,
                 "Every shipped generator (maskgit, raster_ar, maskgit_f4, raster_ar_f4) on the same stratified "
                 "benchmark prompts: a masked model at each step count, a raster one token by token. Prints "
                 "GenEval overall and per tag, forward passes per image and images/s.")


# --- the hybrid residual (DC-AR) -----------------------------------------------------------------
def bench_hybrid(head: str = "dcar_head", every: int = 2, n_samples: int = 4, steps: int = 8, cfg: float = 3.0,
                 seed: int = 0, json_path: str | None = None) -> dict:
    """DC-AR's residual head against the discrete tokens alone (``dcar.compare_residual``) on the
    stratified benchmark prompts: GenEval overall, Shapes-FD, PSNR to the nearest render, time."""
    model = load_shipped([head], (head,), "residual head")[head]
    result = {"head": head, **compare_residual(model, stratified_prompts(every), n_samples, seed, steps, cfg)}
    return report(result, format_hybrid, json_path)


def format_hybrid(result: dict) -> str:
    lines = ["| variant | GenEval overall | Shapes-FD ↓ | PSNR to nearest render ↑ | ms / image |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['overall']:.3f} | {r['shapes_fd']:.3f} | "
                     f"{r['psnr_to_nearest_render']:.2f} dB | {r['seconds_per_image'] * 1e3:.1f} ms |")
    lines.append(f"\nthe residual costs {result['extra_time']:+.1%} time; "
                 f"{result['prompts']} prompts × {result['n_samples']} samples, {result['steps']} steps, "
                 f"cfg {result['cfg']}, seed {result['seed']}.")
    return "\n".join(lines)


def _hybrid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--head", default="dcar_head", help="the residual head checkpoint (default: dcar_head)")
    parser.add_argument("--steps", type=int, default=8, help="MaskGIT decoding steps (default: 8)")
    prompt_options(parser, every=2, prompts=277)


def _hybrid_run(args: argparse.Namespace) -> dict:
    return bench_hybrid(args.head, every=args.every, n_samples=args.n_samples, steps=args.steps, cfg=args.cfg,
                        seed=args.seed, json_path=args.json)


HYBRID = Bench(_hybrid_arguments, _hybrid_run,
               "Generate with maskgit_hybrid on stratified benchmark prompts and decode the same tokens twice, "
               "discrete only and with the residual head's continuous residual. Prints GenEval overall, "
               "Shapes-FD, PSNR to the nearest render and milliseconds per image.")
