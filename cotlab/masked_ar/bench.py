"""The masked-AR benchmarks of notebook 02 (``cotlab bench decoding``, ``cotlab bench hybrid``).

``decoding`` puts the shipped generators side by side on the same prompts: MaskGIT decoding at
several step counts against raster-order AR — GenEval score, forward passes and images per second.
``hybrid`` measures DC-AR's residual head against the discrete tokens alone, on the same tokens.
"""
from __future__ import annotations

import argparse
import time

from cotlab.bench import Bench, load_shipped, only_option, parse_names, prompt_options
from cotlab.geneval import paired_difference, stratified_prompts
from cotlab.masked_ar.dcar import compare_residual
from cotlab.sampling import evaluate_generator
from cotlab.shapes import TAGS
from cotlab.stats import describe_difference, with_interval
from cotlab.options import count

GENERATORS = ("maskgit", "raster_ar", "maskgit_f4", "raster_ar_f4", "maskgit_hybrid")  # masked and raster, 16 and 64 tokens


# --- decoding ----------------------------------------------------------------------------------
def bench_decoding(names: list[str] | None = None, steps: tuple[int, ...] = (4, 8, 16), every: int = 4,
                   n_samples: int = 4, cfg: float = 3.0, seed: int = 0) -> dict:
    """``compare_decoding`` of the shipped generators (named ones must exist; without ``names``, the
    missing ones of ``GENERATORS`` are skipped with a note)."""
    return compare_decoding(load_shipped(names, GENERATORS, "generator"), steps, every, n_samples, cfg, seed)


def compare_decoding(models: dict, steps: tuple[int, ...] = (4, 8, 16), every: int = 4, n_samples: int = 4,
                     cfg: float = 3.0, seed: int = 0) -> dict:
    """Generators ``{name: model}`` on every ``every``-th benchmark prompt (stratified by tag),
    ``n_samples`` each: a masked model once per step count in ``steps`` (at most its N tokens), a
    raster one once (N steps). Rows: GenEval overall and per tag with 95 % intervals, transformer
    forward passes per image, images/s; and each masked row against the raster row of its tokenizer
    (same prompts and sample seeds): the paired difference of overall."""
    metas = stratified_prompts(every)
    rows, judged = [], []
    for name, model in models.items():
        plans = [s for s in steps if s <= model.num_tokens] if model.config.order == "masked" else [None]
        for k in plans:
            options = {"cfg": cfg, **({"steps": k} if k else {})}
            start = time.perf_counter()
            summary = evaluate_generator(model, metas, n_samples, seed, progress=False, **options)
            seconds = time.perf_counter() - start
            rows.append({"generator": name, "order": model.config.order, "tokens": model.num_tokens,
                         "tokenizer": model.config.tokenizer, "steps": k or model.num_tokens,
                         "overall": summary["overall"], "tags": summary["tags"], "interval": summary["interval"],
                         "forward_passes": summary["forward_passes"], "images_per_s": len(metas) * n_samples / seconds})
            judged.append(summary["rows"])
    differences = []
    for r, a in zip(rows, judged):
        for raster, b in zip(rows, judged):
            if r["order"] == "masked" and raster["order"] == "raster" and raster["tokenizer"] == r["tokenizer"]:
                d = paired_difference(a, b)["overall"]
                differences.append({"generator": r["generator"], "steps": r["steps"], "against": raster["generator"],
                                    "difference": d["difference"], "interval": d["interval"],
                                    "fewer_passes": raster["forward_passes"] / r["forward_passes"]})
    return {"prompts": len(metas), "n_samples": n_samples, "cfg": cfg, "seed": seed, "rows": rows,
            "differences": differences}


def format_decoding(result: dict) -> str:
    lines = ["| generator | tokens | steps | overall [95 % interval] | " + " | ".join(TAGS) +
             " | forward passes / image | images/s (incl. judging) |",
             "|---|---|---|---|" + "---|" * len(TAGS) + "---|---|"]
    for r in result["rows"]:
        steps = f"{r['steps']} (raster)" if r["order"] == "raster" else str(r["steps"])
        lines.append(f"| {r['generator']} | {r['tokens']} | {steps} | {with_interval(r['overall'], r['interval']['overall'])} | "
                     + " | ".join(f"{r['tags'].get(t, float('nan')):.2f}" for t in TAGS)
                     + f" | {r['forward_passes']} | {r['images_per_s']:.0f} |")
    if result["differences"]:
        lines += ["", "| masked, against raster AR on the same tokens | overall, paired difference | forward passes |",
                  "|---|---|---|"]
        lines += [f"| {d['generator']} in {d['steps']} steps − {d['against']} | "
                  f"{describe_difference(d['difference'], d['interval'])} | {d['fewer_passes']:.0f}× fewer |"
                  for d in result["differences"]]
    lines.append(f"\n{result['prompts']} prompts (every tag) × {result['n_samples']} samples, cfg {result['cfg']}, "
                 f"seed {result['seed']}; per-task scores' intervals are in the JSON. 95 % intervals: bootstrap over "
                 "prompts, samples resampled within; differences paired (same prompts and sample seeds).")
    return "\n".join(lines)


def _decoding_arguments(parser: argparse.ArgumentParser) -> None:
    only_option(parser, "generators")
    parser.add_argument("--steps", default="4,8,16", help="step counts for masked models (default: 4,8,16)")
    prompt_options(parser, every=4, prompts=139)


def _decoding_run(args: argparse.Namespace) -> dict:
    return bench_decoding(parse_names(args.only), steps=tuple(int(k) for k in args.steps.split(",")), every=args.every,
                          n_samples=args.n_samples, cfg=args.cfg, seed=args.seed)


DECODING = Bench(_decoding_arguments, _decoding_run, format_decoding,
                 "Every shipped generator (maskgit, raster_ar, maskgit_f4, raster_ar_f4, maskgit_hybrid) on the same "
                 "stratified benchmark prompts: a masked model at each step count, a raster one token by token. Prints "
                 "GenEval overall (95 % intervals) and per tag, forward passes per image and images/s, and each masked "
                 "decoding's paired difference to raster AR on the same tokens.")


# --- the hybrid residual (DC-AR) -----------------------------------------------------------------
def bench_hybrid(head: str = "dcar_head", every: int = 2, n_samples: int = 4, steps: int = 8, cfg: float = 3.0,
                 seed: int = 0) -> dict:
    """DC-AR's residual head against the discrete tokens alone (``dcar.compare_residual``) on the
    stratified benchmark prompts: GenEval overall, Shapes-FD, PSNR to the nearest render, time."""
    model = load_shipped([head], (head,), "residual head")[head]
    return {"head": head, **compare_residual(model, stratified_prompts(every), n_samples, seed, steps, cfg)}


def format_hybrid(result: dict) -> str:
    lines = ["| variant | GenEval overall | Shapes-FD ↓ | PSNR to nearest render ↑ (dB) | ms / image |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        ci = r["interval"]
        lines.append(f"| {r['variant']} | {with_interval(r['overall'], ci['overall'])} | "
                     f"{with_interval(r['shapes_fd'], ci['shapes_fd'])} | "
                     f"{with_interval(r['psnr_to_nearest_render'], ci['psnr_to_nearest_render'], 2)} | "
                     f"{r['seconds_per_image'] * 1e3:.1f} |")
    d = result["difference"]
    lines.append(f"\nWith the residual − without, on the same tokens (paired): GenEval overall "
                 f"{describe_difference(d['overall']['difference'], d['overall']['interval'])}; PSNR to the nearest "
                 f"render (dB) {describe_difference(d['psnr_to_nearest_render']['difference'], d['psnr_to_nearest_render']['interval'], 2)}. "
                 f"The residual costs {result['extra_time']:+.1%} time. {result['prompts']} prompts × "
                 f"{result['n_samples']} samples, {result['steps']} steps, cfg {result['cfg']}, seed {result['seed']}; "
                 "95 % intervals: bootstrap over prompts (GenEval) or images.")
    return "\n".join(lines)


def _hybrid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--head", default="dcar_head", help="the residual head checkpoint (default: dcar_head)")
    parser.add_argument("--steps", type=count, default=8, help="MaskGIT decoding steps (default: 8)")
    prompt_options(parser, every=2, prompts=277)


def _hybrid_run(args: argparse.Namespace) -> dict:
    return bench_hybrid(args.head, every=args.every, n_samples=args.n_samples, steps=args.steps, cfg=args.cfg,
                        seed=args.seed)


HYBRID = Bench(_hybrid_arguments, _hybrid_run, format_hybrid,
               "Generate with maskgit_hybrid on stratified benchmark prompts and decode the same tokens twice, "
               "discrete only and with the residual head's continuous residual. Prints GenEval overall, "
               "Shapes-FD, PSNR to the nearest render (each with its 95 % interval), the paired differences, and "
               "milliseconds per image.")
