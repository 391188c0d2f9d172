"""The benchmarks of notebook 04.

``attention`` (``cotlab bench attention``): ReLU linear attention against softmax attention (PyTorch's
fused ``scaled_dot_product_attention``) over sequence lengths N = 256 … 16k and beyond — time and peak
memory of the attention kernel alone, side by side in one run, with the fitted slope of log time
against log N (1: linear, 2: quadratic) and the crossover, the first N where linear is faster.

``dit`` (``cotlab bench dit``): the shipped linear DiTs on the same stratified benchmark prompts and
sample seeds — ``sana`` with flow Euler and Flow-DPM-Solver at several step counts, ``sana_f4`` (the
same model on f4 latents, 4× the tokens) at the default 20 Euler steps — GenEval with intervals,
forward passes and images/s; the paired differences that answer the notebook's questions (DPM-Solver
at 10 steps against Euler at 30; f4 against f8); the training facts from the cards (images/s while
training, minutes to a fixed loss); and each model on the held-out colour–shape bindings.
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import numpy as np
import torch

from cotlab.bench import Bench, best_time, load_shipped, only_option, parse_names, prompt_options
from cotlab.dit.attention import linear_attention, softmax_attention
from cotlab.geneval import benchmark_prompts, paired_difference, stratified_prompts
from cotlab.harness import checkpoint_card, checkpoint_config, checkpoint_history
from cotlab.sampling import evaluate_generator
from cotlab.shapes import TAGS
from cotlab.stats import describe_difference, with_interval

KERNELS = {"linear": linear_attention, "softmax": softmax_attention}


# --- peak memory ---------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


@contextmanager
def peak_memory(device: torch.device):
    """Measures the peak memory added while the block runs, in bytes, into the yielded dict's
    ``"bytes"``: CUDA's peak allocated memory, or on Linux the peak resident set size (VmHWM, reset
    by writing 5 to /proc/self/clear_refs) above what was resident before; None elsewhere."""
    out = {"bytes": None}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["bytes"] = torch.cuda.max_memory_allocated(device) - before
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status_kib("VmRSS")
    except OSError:
        yield out
        return
    yield out
    out["bytes"] = max(_proc_status_kib("VmHWM") - before, 0) * 1024


# --- attention -----------------------------------------------------------------------------------
def log_log_slope(lengths: list[int], seconds: list[float]) -> float:
    """The least-squares slope b of log t = a + b·log N: 1 for time linear in N, 2 for quadratic."""
    return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def bench_attention(lengths: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
                    softmax_max: int = 16384, heads: int = 8, head_dim: int = 32, repeats: int = 3,
                    seed: int = 0) -> dict:
    """Time (fastest of ``repeats`` after a warm-up) and peak memory of each attention kernel on
    random q, k, v (1, heads, N, head_dim) for every N in ``lengths`` (softmax up to ``softmax_max``:
    it is quadratic), on the default device; the log-log slopes over N ≥ 1024 and the crossover."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        q, k, v = (torch.randn(1, heads, n, head_dim, generator=generator).to(device) for _ in range(3))
        for name, kernel in KERNELS.items():
            if name == "softmax" and n > softmax_max:
                continue
            with torch.no_grad():
                seconds = best_time(lambda: kernel(q, k, v), repeats, sync)
                with peak_memory(device) as memory:
                    kernel(q, k, v)
            rows.append({"kernel": name, "tokens": n, "seconds": seconds, "peak_bytes": memory["bytes"]})
    slopes = {}
    for name in KERNELS:
        points = [(r["tokens"], r["seconds"]) for r in rows if r["kernel"] == name and r["tokens"] >= 1024]
        if len(points) >= 2:
            slopes[name] = log_log_slope(*map(list, zip(*points)))
    times = {(r["kernel"], r["tokens"]): r["seconds"] for r in rows}
    both = sorted(n for n in lengths if ("softmax", n) in times)
    crossover = next((n for n in both if times[("linear", n)] < times[("softmax", n)]), None)
    largest = both[-1] if both else None
    return {"device": str(device), "threads": torch.get_num_threads(), "heads": heads, "head_dim": head_dim,
            "repeats": repeats, "rows": rows, "slopes": slopes, "crossover": crossover,
            "largest_shared": largest,
            "speedup_at_largest": times[("softmax", largest)] / times[("linear", largest)] if largest else None}


def _megabytes(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2 ** 20:.1f}"


def format_attention(result: dict) -> str:
    by = {(r["kernel"], r["tokens"]): r for r in result["rows"]}
    lengths = sorted({r["tokens"] for r in result["rows"]})
    lines = ["| tokens N | linear (ms) | softmax SDPA (ms) | softmax / linear | linear peak (MiB) | softmax peak (MiB) |",
             "|---|---|---|---|---|---|"]
    for n in lengths:
        lin, soft = by.get(("linear", n)), by.get(("softmax", n))
        ratio = f"{soft['seconds'] / lin['seconds']:.1f}×" if lin and soft else "—"
        lines.append(f"| {n:,} | {lin['seconds'] * 1e3:.2f} | "
                     + (f"{soft['seconds'] * 1e3:.1f}" if soft else "not run (quadratic)")
                     + f" | {ratio} | {_megabytes(lin['peak_bytes'])} | "
                     + (_megabytes(soft['peak_bytes']) if soft else "—") + " |")
    slopes = ", ".join(f"{name} {slope:.2f}" for name, slope in result["slopes"].items())
    crossover = f"{result['crossover']:,} tokens" if result["crossover"] else "not reached"
    lines.append(f"\nSlope of log time against log N (N ≥ 1024): {slopes} (1 = linear, 2 = quadratic). Linear "
                 f"attention is faster from {crossover}; at {result['largest_shared']:,} tokens it is "
                 f"{result['speedup_at_largest']:.0f}× faster. One sequence, {result['heads']} heads of "
                 f"{result['head_dim']}, the attention kernel alone (no projections), fastest of {result['repeats']} "
                 f"after a warm-up, on {result['device']} with {result['threads']} threads; peak memory is the "
                 "peak resident memory (CPU) or allocated memory (CUDA) added by one call.")
    return "\n".join(lines)


def _attention_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", default="256,512,1024,2048,4096,8192,16384,32768,65536",
                        help="sequence lengths N (default: 256 … 65536)")
    parser.add_argument("--softmax-max", type=int, default=16384,
                        help="longest N for softmax, which is quadratic (default: 16384)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per point, fastest kept (default: 3)")


def _attention_run(args: argparse.Namespace) -> dict:
    return bench_attention(tuple(int(n) for n in args.lengths.split(",")), args.softmax_max,
                           repeats=args.repeats, seed=args.seed)


ATTENTION = Bench(_attention_arguments, _attention_run, format_attention,
                  "ReLU linear attention against softmax attention (PyTorch SDPA) over sequence lengths: time and "
                  "peak memory of the kernel alone, the log-log slope of time against N and the crossover.")


# --- the DiT: solvers, compression, held-out bindings ------------------------------------------------
GENERATORS = ("sana", "sana_f4")
SOLVER_PLANS = (("euler", 10), ("euler", 20), ("euler", 30), ("dpm", 5), ("dpm", 10), ("dpm", 20))
DEFAULT = ("euler", 20)  # cotlab generate's decoding, and the card's


def training_facts(name: str) -> dict:
    """From a checkpoint's card and history: training images/s, minutes, steps and the logged loss
    against wall time [(minutes, loss)] (steps take equal time: minutes = step × time per step)."""
    card = checkpoint_card(name)
    per_step = card["train_seconds"] / max(card["steps"], 1)
    batch = checkpoint_config(name)["batch_size"]
    loss = checkpoint_history(name).get("train_loss", [])
    return {"images_per_s": card["steps"] * batch / card["train_seconds"], "minutes": card["train_seconds"] / 60,
            "steps": card["steps"], "loss_curve": [(step * per_step / 60, value) for step, value in loss]}


def minutes_to_loss(curve: list[tuple[float, float]], level: float, window: int = 10) -> float | None:
    """The first time the running mean of the last ``window`` logged losses is at or below ``level``."""
    values = [v for _, v in curve]
    for i in range(len(curve)):
        if np.mean(values[max(0, i - window + 1):i + 1]) <= level:
            return curve[i][0]
    return None


def bench_dit(names: list[str] | None = None, every: int = 2, n_samples: int = 4, cfg: float = 3.0,
              seed: int = 0) -> dict:
    """``sana`` at every solver plan, the others at the default; each model also on the held-out
    bindings (every ``every``-th); paired differences and training facts (module docstring)."""
    models = load_shipped(names, GENERATORS, "DiT")
    metas, heldout = stratified_prompts(every), benchmark_prompts(heldout=True)[::every]
    rows, judged = [], {}
    for name, model in models.items():
        for solver, steps in (SOLVER_PLANS if name == "sana" else (DEFAULT,)):
            start = time.perf_counter()
            summary = evaluate_generator(model, metas, n_samples, seed, progress=False, steps=steps, cfg=cfg,
                                         solver=solver)
            seconds = time.perf_counter() - start
            rows.append({"generator": name, "autoencoder": model.config.autoencoder, "tokens": model.latent_size ** 2,
                         "solver": solver, "steps": steps, "overall": summary["overall"], "tags": summary["tags"],
                         "interval": summary["interval"], "forward_passes": summary["forward_passes"],
                         "images_per_s": len(metas) * n_samples / seconds})
            judged[name, solver, steps] = summary["rows"]
    differences = []
    if ("sana", "dpm", 10) in judged and ("sana", "euler", 30) in judged:
        d = paired_difference(judged["sana", "dpm", 10], judged["sana", "euler", 30])["overall"]
        differences.append({"a": "sana, dpm 10 steps", "b": "sana, euler 30 steps", **d})
    if ("sana_f4", *DEFAULT) in judged and ("sana", *DEFAULT) in judged:
        d = paired_difference(judged[("sana", *DEFAULT)], judged[("sana_f4", *DEFAULT)])["overall"]
        differences.append({"a": "sana (f8)", "b": "sana_f4 (f4)", **d})
    training = {name: training_facts(name) for name in models}
    level = max(min(v for _, v in t["loss_curve"]) for t in training.values() if t["loss_curve"]) if training else None
    for t in training.values():
        t["minutes_to_loss"] = minutes_to_loss(t["loss_curve"], level) if level is not None else None
    heldout_rows = []
    for name, model in models.items():
        summary = evaluate_generator(model, heldout, n_samples, seed, progress=False, cfg=cfg)
        heldout_rows.append({"generator": name, "overall": summary["overall"], "interval": summary["interval"]["overall"],
                             "prompts": len(heldout)})
    return {"prompts": len(metas), "n_samples": n_samples, "cfg": cfg, "seed": seed, "rows": rows,
            "differences": differences, "training": training, "loss_level": level, "heldout": heldout_rows}


def format_dit(result: dict) -> str:
    lines = ["| generator | latents | solver | steps | overall [95 % interval] | " + " | ".join(TAGS) +
             " | forward passes / image | images/s (incl. judging) |",
             "|---|---|---|---|---|" + "---|" * len(TAGS) + "---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['generator']} | {r['autoencoder']} ({r['tokens']} tokens) | {r['solver']} | {r['steps']} | "
                     f"{with_interval(r['overall'], r['interval']['overall'])} | "
                     + " | ".join(f"{r['tags'].get(t, float('nan')):.2f}" for t in TAGS)
                     + f" | {r['forward_passes']} | {r['images_per_s']:.0f} |")
    if result["differences"]:
        lines += ["", "| paired comparison (same prompts and seeds) | overall, difference |", "|---|---|"]
        lines += [f"| {d['a']} − {d['b']} | {describe_difference(d['difference'], d['interval'])} |"
                  for d in result["differences"]]
    if result["training"]:
        level = result["loss_level"]
        lines += ["", f"| training | images/s | minutes | steps | minutes to loss ≤ {level:.3f} |", "|---|---|---|---|---|"]
        for name, t in result["training"].items():
            reach = "not reached" if t["minutes_to_loss"] is None else f"{t['minutes_to_loss']:.1f}"
            lines.append(f"| {name} | {t['images_per_s']:.0f} | {t['minutes']:.1f} | {t['steps']} | {reach} |")
    lines += ["", "| held-out bindings (never trained on) | overall [95 % interval] | prompts |", "|---|---|---|"]
    lines += [f"| {h['generator']} | {with_interval(h['overall'], h['interval'])} | {h['prompts']} |"
              for h in result["heldout"]]
    lines.append(f"\n{result['prompts']} benchmark prompts (every tag) × {result['n_samples']} samples, cfg "
                 f"{result['cfg']:g}, seed {result['seed']}; held-out bindings at 20 Euler steps. 95 % intervals: "
                 "bootstrap over prompts, samples resampled within; differences paired. Training images/s and "
                 "minutes come from the checkpoints' cards (two CPU cores, one job at a time); the loss level is "
                 "the higher of the models' lowest logged losses, as a running mean of 10 logged values — note "
                 "that losses on different latent spaces are not the same quantity.")
    return "\n".join(lines)


def _dit_arguments(parser: argparse.ArgumentParser) -> None:
    only_option(parser, "DiTs")
    prompt_options(parser, every=2, prompts=277)


def _dit_run(args: argparse.Namespace) -> dict:
    return bench_dit(parse_names(args.only), every=args.every, n_samples=args.n_samples, cfg=args.cfg, seed=args.seed)


DIT = Bench(_dit_arguments, _dit_run, format_dit,
            "The shipped linear DiTs (sana, sana_f4) on the same stratified benchmark prompts: sana with flow Euler "
            "and Flow-DPM-Solver at several step counts, sana_f4 at 20 Euler steps. Prints GenEval overall (95 % "
            "intervals) and per tag, forward passes, images/s, the paired differences (DPM 10 vs Euler 30; f8 vs "
            "f4), training throughput and time to a fixed loss from the cards, and the held-out bindings.")
