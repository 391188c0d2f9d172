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
training, minutes, the loss curve against time); and each model on the held-out colour–shape bindings.

``throughput`` (``cotlab bench throughput``): what deep compression buys a training step, measured side by
side in one run (the cards' images/s come from runs at different times, on a machine whose speed
drifts): one step of each DiT on the same batch, taken apart into rendering the scenes, encoding them
(the DC-AE and the text encoder) and the transformer's own step, as images/s with encoding every batch
(how ``sana`` trains) and on cached latents (how the next-X models train).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cotlab.bench import Bench, best_time, load_shipped, only_option, parse_names, prompt_options
from cotlab.dit.attention import linear_attention, softmax_attention
from cotlab.flow import flow_loss
from cotlab.geneval import benchmark_prompts, paired_difference, stratified_prompts
from cotlab.harness import checkpoint_card, checkpoint_config, checkpoint_history
from cotlab.sampling import evaluate_generator
from cotlab.shapes import TAGS, ShapesStream, World
from cotlab.stats import describe_difference, with_interval
from cotlab.options import count

KERNELS = {"linear": linear_attention, "softmax": softmax_attention}


# --- peak memory ---------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _inputs(tokens: int, heads: int, head_dim: int, seed: int, device="cpu") -> list[torch.Tensor]:
    """Random q, k, v, each (1, heads, tokens, head_dim)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, heads, tokens, head_dim, generator=generator).to(device) for _ in range(3)]


def _cpu_peak(kernel: str, tokens: int, heads: int, head_dim: int, seed: int) -> int | None:
    """The peak resident memory one call of ``kernel`` adds, in bytes: on Linux the peak VmHWM (reset by
    writing 5 to /proc/self/clear_refs) above the VmRSS before the call; None elsewhere. Run it in a
    fresh process, where no memory an earlier call left resident can be reused unseen."""
    with torch.no_grad():
        KERNELS[kernel](*_inputs(64, heads, head_dim, seed))  # a small warm-up: one-time set-up is not the call's
    q, k, v = _inputs(tokens, heads, head_dim, seed)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status_kib("VmRSS")
    except OSError:
        return None
    with torch.no_grad():
        KERNELS[kernel](q, k, v)
    return max(_proc_status_kib("VmHWM") - before, 0) * 1024


def _cuda_peak(kernel: str, tokens: int, heads: int, head_dim: int, seed: int, device: torch.device) -> int:
    """The peak memory one call of ``kernel`` allocates on a CUDA device, in bytes."""
    q, k, v = _inputs(tokens, heads, head_dim, seed, device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        KERNELS[kernel](q, k, v)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


# --- attention -----------------------------------------------------------------------------------
def log_log_slope(lengths: list[int], seconds: list[float]) -> float:
    """The least-squares slope b of log t = a + b·log N: 1 for time linear in N, 2 for quadratic."""
    return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def bench_attention(lengths: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
                    softmax_max: int = 16384, heads: int = 8, head_dim: int = 32, repeats: int = 3,
                    seed: int = 0) -> dict:
    """Time (fastest of ``repeats`` after a warm-up) and peak memory of each attention kernel on
    random q, k, v (1, heads, N, head_dim) for every N in ``lengths`` (softmax up to ``softmax_max``:
    it is quadratic), on the default device; the log-log slopes over N ≥ 4096 and over N ≥ 1024, and
    the crossover."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    rows = []
    for n in lengths:
        q, k, v = _inputs(n, heads, head_dim, seed, device)
        for name, kernel in KERNELS.items():
            if name == "softmax" and n > softmax_max:
                continue
            with torch.no_grad():
                seconds = best_time(lambda: kernel(q, k, v), repeats, sync)
            rows.append({"kernel": name, "tokens": n, "seconds": seconds})
    plan = [(r["kernel"], r["tokens"], heads, head_dim, seed) for r in rows]
    if device.type == "cpu":  # each call in a fresh process (spawned: it imports torch anew, a few seconds each)
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            peaks = pool.starmap(_cpu_peak, plan)
    else:
        peaks = [_cuda_peak(*args, device) for args in plan]
    for row, peak in zip(rows, peaks):
        row["peak_bytes"] = peak

    def slopes_from(smallest: int) -> dict:
        out = {}
        for name in KERNELS:
            points = [(r["tokens"], r["seconds"]) for r in rows if r["kernel"] == name and r["tokens"] >= smallest]
            if len(points) >= 2:
                out[name] = log_log_slope(*map(list, zip(*points)))
        return out

    times = {(r["kernel"], r["tokens"]): r["seconds"] for r in rows}
    both = sorted(n for n in lengths if ("softmax", n) in times)
    crossover = next((n for n in both if times[("linear", n)] < times[("softmax", n)]), None)
    largest = both[-1] if both else None
    return {"device": str(device), "threads": torch.get_num_threads(), "heads": heads, "head_dim": head_dim,
            "repeats": repeats, "rows": rows, "slopes": slopes_from(4096), "slopes_from_1024": slopes_from(1024),
            "crossover": crossover,
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
    from_1024 = ", ".join(f"{name} {slope:.2f}" for name, slope in result["slopes_from_1024"].items())
    crossover = f"{result['crossover']:,} tokens" if result["crossover"] else "not reached"
    lines.append(f"\nSlope of log time against log N for N ≥ 4,096: {slopes}; for N ≥ 1,024: {from_1024} (1 = linear, "
                 f"2 = quadratic; the time per token also steps up where the tensors outgrow a cache). Linear "
                 f"attention is faster from {crossover}; at {result['largest_shared']:,} tokens it is "
                 f"{result['speedup_at_largest']:.0f}× faster. One sequence, {result['heads']} heads of "
                 f"{result['head_dim']}, the attention kernel alone (no projections), fastest of {result['repeats']} "
                 f"after a warm-up, on {result['device']} with {result['threads']} threads; peak memory is what one call "
                 "adds: the peak resident memory, each call in a fresh process (CPU), or the peak allocated memory (CUDA).")
    return "\n".join(lines)


def _attention_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", default="256,512,1024,2048,4096,8192,16384,32768,65536",
                        help="sequence lengths N (default: 256 … 65536)")
    parser.add_argument("--softmax-max", type=count, default=16384,
                        help="longest N for softmax, which is quadratic (default: 16384)")
    parser.add_argument("--repeats", type=count, default=3, help="timed calls per point, fastest kept (default: 3)")


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


def bench_dit(names: list[str] | None = None, every: int = 2, n_samples: int = 4, cfg: float = 4.5,
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
    heldout_rows = []
    for name, model in models.items():
        summary = evaluate_generator(model, heldout, n_samples, seed, progress=False, cfg=cfg)
        heldout_rows.append({"generator": name, "overall": summary["overall"], "interval": summary["interval"]["overall"],
                             "prompts": len(heldout)})
    return {"prompts": len(metas), "n_samples": n_samples, "cfg": cfg, "seed": seed, "rows": rows,
            "differences": differences, "training": training, "heldout": heldout_rows}


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
        lines += ["", "| training | images/s | minutes | steps | final loss (last 10 logged) |", "|---|---|---|---|---|"]
        for name, t in result["training"].items():
            final = np.mean([v for _, v in t["loss_curve"][-10:]]) if t["loss_curve"] else float("nan")
            lines.append(f"| {name} | {t['images_per_s']:.0f} | {t['minutes']:.1f} | {t['steps']} | {final:.3f} |")
    lines += ["", "| held-out bindings (never trained on) | overall [95 % interval] | prompts |", "|---|---|---|"]
    lines += [f"| {h['generator']} | {with_interval(h['overall'], h['interval'])} | {h['prompts']} |"
              for h in result["heldout"]]
    lines.append(f"\n{result['prompts']} benchmark prompts (every tag) × {result['n_samples']} samples, cfg "
                 f"{result['cfg']:g}, seed {result['seed']}; held-out bindings at 20 Euler steps. 95 % intervals: "
                 "bootstrap over prompts, samples resampled within; differences paired. Training images/s and "
                 "minutes come from the checkpoints' cards (two CPU cores, one job at a time). The losses are not "
                 "comparable across latent spaces (each is the flow-matching error on its own latents), so no "
                 "'time to a fixed loss' is given across them: compare the scores.")
    return "\n".join(lines)


def _dit_arguments(parser: argparse.ArgumentParser) -> None:
    only_option(parser, "DiTs")
    prompt_options(parser, every=2, prompts=277, cfg=4.5)


def _dit_run(args: argparse.Namespace) -> dict:
    return bench_dit(parse_names(args.only), every=args.every, n_samples=args.n_samples, cfg=args.cfg, seed=args.seed)


DIT = Bench(_dit_arguments, _dit_run, format_dit,
            "The shipped linear DiTs (sana, sana_f4) on the same stratified benchmark prompts: sana with flow Euler "
            "and Flow-DPM-Solver at several step counts, sana_f4 at 20 Euler steps. Prints GenEval overall (95 % "
            "intervals) and per tag, forward passes, images/s, the paired differences (DPM 10 vs Euler 30; f8 vs "
            "f4), training throughput and time to a fixed loss from the cards, and the held-out bindings.")


# --- deep compression in training --------------------------------------------------------------------
def training_step_seconds(model, batch: dict, repeats: int = 5) -> dict:
    """One training step of a DiT on ``batch`` (B images and captions) taken apart, each part the
    fastest of ``repeats`` after a warm-up: ``encode_s``, the frozen DC-AE encoding the images and the
    text encoder the captions (what cached latents and text states skip), and ``step_s``, the
    transformer's step on them — flow matching's loss, backward and an AdamW update at learning rate 0
    (the same work, and the shipped weights stay as they are)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    encoded = {}

    def encode():
        encoded["z"] = model.encode_images(batch["image"])  # (B, C, h, w)
        encoded["text"] = model.encode_text(list(batch["caption"]))  # (B, T, D_text), (B, T)

    def step():
        x, sigma, text, mask, z, noise = model.noised_latents(encoded["z"], *encoded["text"])
        loss = flow_loss(model(x, sigma, text, mask), z, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    seconds = {"encode_s": best_time(encode, repeats), "step_s": best_time(step, repeats)}
    model.eval()
    return seconds


def bench_throughput(names: list[str] | None = None, batch_size: int = 64, repeats: int = 5, seed: int = 0) -> dict:
    """``training_step_seconds`` of each DiT (default ``sana`` and ``sana_f4``) on the same batch of
    training scenes, the rendering of such a batch, and images/s with encoding every batch (rendering,
    encoding and the step) and on cached latents (the step alone), each also as a multiple of the
    model with the most tokens."""
    models = load_shipped(names, GENERATORS, "DiT")
    stream = iter(ShapesStream(World(), batch_size, seed=seed))
    batch = next(stream)  # the same scenes for every model
    render_s = best_time(lambda: next(stream), repeats)
    rows = []
    for name, model in models.items():
        t = training_step_seconds(model, batch, repeats)
        rows.append({"generator": name, "autoencoder": model.config.autoencoder, "tokens": model.latent_size ** 2,
                     **t, "images_per_s": {"encoding": batch_size / (render_s + t["encode_s"] + t["step_s"]),
                                           "cached": batch_size / t["step_s"]}})
    reference = max(rows, key=lambda r: r["tokens"])
    for r in rows:
        r["speedup"] = {kind: v / reference["images_per_s"][kind] for kind, v in r["images_per_s"].items()}
    return {"batch_size": batch_size, "repeats": repeats, "seed": seed, "render_s": render_s,
            "reference": reference["generator"], "threads": torch.get_num_threads(), "rows": rows}


def format_throughput(result: dict) -> str:
    ref = result["reference"]
    lines = ["| generator | latents | encoding a batch (ms) | transformer step (ms) | images/s, encoding every batch | "
             f"images/s, cached latents | × {ref} (encoding / cached) |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['generator']} | {r['autoencoder']} ({r['tokens']} tokens) | {1000 * r['encode_s']:.0f} | "
                     f"{1000 * r['step_s']:.0f} | {r['images_per_s']['encoding']:.0f} | {r['images_per_s']['cached']:.0f} | "
                     f"{r['speedup']['encoding']:.2f}× / {r['speedup']['cached']:.2f}× |")
    lines.append(f"\nOne training step on the same batch of {result['batch_size']} training scenes, each part the fastest "
                 f"of {result['repeats']} after a warm-up, {result['threads']} threads. Rendering a batch "
                 f"({1000 * result['render_s']:.0f} ms) counts in 'encoding every batch', as it does when sana trains; "
                 "'cached latents' is the transformer's step alone (loss, backward, AdamW).")
    return "\n".join(lines)


def _throughput_arguments(parser: argparse.ArgumentParser) -> None:
    only_option(parser, "DiTs")
    parser.add_argument("--batch-size", type=count, default=64, help="training batch size (default: 64, the cpu recipe's)")
    parser.add_argument("--repeats", type=count, default=5, help="timed calls of each part (default: 5)")


def _throughput_run(args: argparse.Namespace) -> dict:
    return bench_throughput(parse_names(args.only), batch_size=args.batch_size, repeats=args.repeats, seed=args.seed)


THROUGHPUT = Bench(_throughput_arguments, _throughput_run, format_throughput,
                   "Deep compression in training: one training step of each shipped DiT (sana on f8, sana_f4 on f4 "
                   "latents) on the same batch, side by side in one run — rendering, encoding and the transformer's step "
                   "timed apart; images/s with encoding every batch and on cached latents.")


# --- SANA 1.5: inference-time scaling --------------------------------------------------------------
def bench_scaling(generator: str = "sana", every: int = 8, N: int = 64, seed: int = 0) -> dict:
    """``scaling.inference_scaling`` of a shipped generator on the stratified benchmark prompts with
    the zero-shot CLIPScore, the fine-tuned ORM (trained on maskgit's images) and the exact evaluator."""
    from cotlab.dit.scaling import inference_scaling
    from cotlab.verification.search import clip_scorer, oracle_scorer, reward_scorer

    model = load_shipped([generator], (generator,), "generator")[generator]
    judges = load_shipped(["clip", "orm"], ("clip", "orm"), "verifier")
    metas = stratified_prompts(every)
    scorers = {"clip": clip_scorer(judges["clip"]), "orm": reward_scorer(judges["orm"]),
               "oracle": oracle_scorer({m["prompt"]: m for m in metas})}
    ns = tuple(n for n in (1, 2, 4, 8, 16, 32, 64) if n <= N and N % n == 0)
    return {"generator": generator, "seed": seed, **inference_scaling(model, scorers, metas, N, ns, seed)}


def format_scaling(result: dict) -> str:
    verifiers = list(result["curves"])
    lines = ["| samples n | " + " | ".join(f"top-1 by {v}" for v in verifiers) + " |", "|---|" + "---|" * len(verifiers)]
    for n in result["ns"]:
        cells = [with_interval(result["curves"][v]["top-1"][str(n)]["overall"], result["curves"][v]["top-1"][str(n)]["interval"]["overall"])
                 for v in verifiers]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    n = max(result["ns"])
    lines += ["", f"| at n = {n} | top-1: overall | calls / image | tournament: overall | comparisons / image |",
              "|---|---|---|---|---|"]
    for v in verifiers:
        top, tour = result["curves"][v]["top-1"][str(n)], result["curves"][v]["tournament"][str(n)]
        lines.append(f"| {v} | {with_interval(top['overall'], top['interval']['overall'])} | {top['calls']} | "
                     f"{with_interval(tour['overall'], tour['interval']['overall'])} | {tour['calls']} |")
    lines += ["", "| verifier on this generator's images | AUROC, all samples | AUROC within a prompt (prompts) | precision | recall |",
              "|---|---|---|---|---|"]
    for v, q in result["quality"].items():
        w = q["within_prompt"]
        lines.append(f"| {v} | {with_interval(q['auroc'], q['interval']['auroc'])} | "
                     f"{with_interval(w['auroc'], w['interval'])} ({w['prompts']}) | "
                     f"{with_interval(q['precision'], q['interval']['precision'])} | "
                     f"{with_interval(q['recall'], q['interval']['recall'])} |")
    gains = "; ".join(f"{v} {describe_difference(result['curves'][v]['top-1'][str(k)]['gain_over_one']['difference'], result['curves'][v]['top-1'][str(k)]['gain_over_one']['interval'])}"
                      for v in verifiers for k in [32 if 32 in result["ns"] else n])
    lines.append(f"\nBest-of-{32 if 32 in result['ns'] else n} against one sample (paired: the same groups): {gains}. "
                 f"{result['generator']}, {result['N']} samples for each of {result['prompts']} prompts (every tag), cut "
                 "into groups of n; each group's choice judged exactly. The tournament pairs the entrants and keeps the "
                 "higher score of each pair: with verifiers that score one image at a time it picks top-1's image. "
                 "AUROC within a prompt: the mean over the prompts with both right and wrong samples of the AUROC among "
                 "that prompt's samples — the ranking best-of-N relies on. 95 % intervals: bootstrap over prompts, groups "
                 "resampled within; over all samples for the pooled AUROC.")
    return "\n".join(lines)


def _scaling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", default="sana", help="a shipped generator (default: sana)")
    parser.add_argument("--every", type=count, default=8, help="every EVERY-th prompt of each tag (default: 8, i.e. 70)")
    parser.add_argument("--samples", type=count, default=64, help="samples N per prompt (default: 64)")


def _scaling_run(args: argparse.Namespace) -> dict:
    return bench_scaling(args.generator, every=args.every, N=args.samples, seed=args.seed)


SCALING = Bench(_scaling_arguments, _scaling_run, format_scaling,
                "SANA 1.5's inference-time scaling: N samples per prompt chosen by CLIPScore, the fine-tuned ORM or the "
                "exact evaluator, as top-1 and as a single-elimination tournament; score against n = 1 … N with 95 % "
                "intervals, verifier calls, each verifier's AUROC on this generator's images.")


# --- SANA 1.5: growth and pruning ------------------------------------------------------------------
def train_briefly(model, steps: int, lr: float, seed: int, profile: str, name: str) -> tuple[list, float]:
    """Train ``model`` for ``steps`` steps (warm-up 10 %, cosine decay, learning rate ``lr``) on fresh
    Shapes batches; return its logged loss [(minutes, loss)] (steps taking equal time) and seconds."""
    import tempfile
    from dataclasses import replace

    from cotlab.harness import fit, logged_history, seed_everything
    from cotlab.shapes import ShapesDataModule

    model.config = replace(model.config, max_steps=steps, warmup_steps=max(steps // 10, 1), lr=lr, max_minutes=None)
    seed_everything(seed)
    model.train()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        trainer = fit(model, ShapesDataModule(batch_size=model.config.batch_size, seed=seed), profile=profile,
                      run_dir=folder, name=name, enable_progress_bar=False)
        seconds = time.perf_counter() - start
        history = logged_history(trainer).get("train_loss", [])
    model.eval()
    return [(step * seconds / 60 / max(steps, 1), value) for step, value in history], seconds


def bench_growth(base: str = "sana", steps: int = 400, every: int = 4, n_samples: int = 4, cfg: float = 4.5,
                 seed: int = 0, profile: str = "cpu") -> dict:
    """SANA 1.5's training-time scaling on the shipped ``base`` (L blocks):

    - growth: a 2L-block model trained from scratch for ``steps`` steps against ``base`` grown to 2L
      blocks (``scaling.grow``) and trained for the same steps with the same recipe — loss against
      time, the time the grown one needs to reach the from-scratch model's final loss, both scores;
    - pruning: block importance on 128 calibration images, ``base`` pruned to each depth L−1 … L/2
      (``scaling.prune``), scored as it is, and the half-depth model fine-tuned for 10 % of ``base``'s
      training steps at a tenth of its learning rate, twice — on flow matching's target and on the full
      model's velocity (``scaling.Healing``) — each scored against ``base``, paired."""
    from cotlab.dit.model import SanaDiT
    from cotlab.dit.scaling import Healing, block_importance, grow, prune
    from cotlab.shapes import ShapesStream, World

    model = load_shipped([base], (base,), "DiT")[base]
    L, base_steps, lr = model.config.layers, checkpoint_card(base)["steps"], model.config.lr
    metas = stratified_prompts(every)

    def score(m) -> dict:
        return evaluate_generator(m, metas, n_samples, seed, progress=False, cfg=cfg)

    full = score(model)

    def against_full(summary: dict) -> dict:
        return paired_difference(summary["rows"], full["rows"])["overall"]

    from dataclasses import replace
    scratch = SanaDiT(replace(model.config, layers=2 * L))
    scratch_curve, scratch_seconds = train_briefly(scratch, steps, lr, seed, profile, "scratch")
    grown = grow(model, 2 * L)
    grown_curve, grown_seconds = train_briefly(grown, steps, lr, seed, profile, "grown")
    level = float(np.mean([v for _, v in scratch_curve[-10:]]))
    s_scratch, s_grown = score(scratch), score(grown)
    growth = {"layers": [L, 2 * L], "steps": steps, "lr": lr, "loss_level": level,
              "scratch": {"curve": scratch_curve, "seconds": scratch_seconds, "overall": s_scratch["overall"],
                          "interval": s_scratch["interval"]["overall"]},
              "grown": {"curve": grown_curve, "seconds": grown_seconds, "overall": s_grown["overall"],
                        "interval": s_grown["interval"]["overall"], "minutes_to_level": minutes_to_loss(grown_curve, level)},
              "grown_minus_scratch": paired_difference(s_grown["rows"], s_scratch["rows"])["overall"]}

    calibration = next(iter(ShapesStream(World(), 128, seed=seed + 1)))
    importance = block_importance(model, calibration["image"], calibration["caption"])
    depths = []
    for keep in range(L - 1, L // 2 - 1, -1):
        summary = score(prune(model, importance, keep))
        depths.append({"blocks": keep, "overall": summary["overall"], "interval": summary["interval"]["overall"],
                       "minus_full": against_full(summary)})
    tune_steps = max(base_steps // 10, 1)
    fine_tunes = {}
    for target, half in (("flow matching", prune(model, importance, L // 2)),
                         ("the full model", Healing.of(prune(model, importance, L // 2), model))):
        _, seconds = train_briefly(half, tune_steps, lr / 10, seed, profile, "pruned")
        tuned = score(half)
        fine_tunes[target] = {"blocks": L // 2, "seconds": seconds, "overall": tuned["overall"],
                              "interval": tuned["interval"]["overall"], "minus_full": against_full(tuned)}
    pruning = {"importance": importance.tolist(), "kept": sorted(importance.topk(L // 2).indices.tolist()),
               "depths": depths, "fine_tune_steps": tune_steps, "fine_tunes": fine_tunes}
    return {"base": base, "prompts": len(metas), "n_samples": n_samples, "cfg": cfg, "seed": seed,
            "full": {"blocks": L, "overall": full["overall"], "interval": full["interval"]["overall"]},
            "growth": growth, "pruning": pruning}


def format_growth(result: dict) -> str:
    g, p, full = result["growth"], result["pruning"], result["full"]
    reach = g["grown"]["minutes_to_level"]
    reach = ("does not reach" if reach is None else
             f"reaches it in {reach:.1f} min ({reach / (g['scratch']['seconds'] / 60):.0%} of the from-scratch model's time)")
    lines = [f"| growth, {g['steps']} steps each | blocks | minutes | final loss | overall [95 % interval] |",
             "|---|---|---|---|---|",
             f"| {result['base']} as shipped | {g['layers'][0]} | — | — | {with_interval(full['overall'], full['interval'])} |"]
    for key, label in (("scratch", "from scratch"), ("grown", f"grown from {result['base']}")):
        r = g[key]
        lines.append(f"| {label} | {g['layers'][1]} | {r['seconds'] / 60:.1f} | {np.mean([v for _, v in r['curve'][-10:]]):.3f} | "
                     f"{with_interval(r['overall'], r['interval'])} |")
    d = g["grown_minus_scratch"]
    lines.append(f"\nThe from-scratch model's final loss ({g['loss_level']:.3f}, the mean of its last 10 logged values): "
                 f"the grown model {reach}; "
                 f"grown − from scratch: {describe_difference(d['difference'], d['interval'])}.")
    lines += ["", "| pruned by block importance | blocks kept | overall [95 % interval] | − full (paired) |", "|---|---|---|---|"]
    for r in p["depths"]:
        lines.append(f"| as pruned | {r['blocks']} | {with_interval(r['overall'], r['interval'])} | "
                     f"{describe_difference(r['minus_full']['difference'], r['minus_full']['interval'])} |")
    for target, t in p["fine_tunes"].items():
        lines.append(f"| + fine-tune on {target}'s target, {p['fine_tune_steps']} steps ({t['seconds'] / 60:.1f} min) | "
                     f"{t['blocks']} | {with_interval(t['overall'], t['interval'])} | "
                     f"{describe_difference(t['minus_full']['difference'], t['minus_full']['interval'])} |")
    lines.append(f"\nBlock importance BI_i = 1 − E[cos(X_i, X_i+1)]: {', '.join(f'{v:.3f}' for v in p['importance'])}; half "
                 f"depth keeps blocks {p['kept']}. {result['prompts']} prompts × {result['n_samples']} samples, 20 Euler "
                 f"steps, cfg {result['cfg']:g}; growth runs use the base recipe (warm-up 10 %, cosine decay); the fine-tunes a tenth of its "
                 "learning rate, on ε − x₀ (flow matching) or on the full model's velocity at the same x_σ. 95 % intervals: bootstrap over prompts; differences paired.")
    return "\n".join(lines)


def _growth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default="sana", help="the shipped DiT to grow and prune (default: sana)")
    parser.add_argument("--steps", type=count, default=400, help="training steps of each growth run (default: 400)")
    prompt_options(parser, every=4, prompts=139, cfg=4.5)


def _growth_run(args: argparse.Namespace) -> dict:
    return bench_growth(args.base, steps=args.steps, every=args.every, n_samples=args.n_samples, cfg=args.cfg,
                        seed=args.seed)


GROWTH = Bench(_growth_arguments, _growth_run, format_growth,
               "SANA 1.5's training-time scaling on the shipped sana: grown to twice the depth (new blocks the identity) "
               "against the deep model from scratch, the same steps each; pruned by block importance to each depth, and "
               "the half-depth model fine-tuned briefly on flow matching's target and on the full model's — scores with 95 % intervals, paired against the full model.")
