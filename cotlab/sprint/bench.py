"""The benchmark of notebook 05: ``cotlab bench sampling``.

The teacher (``sprint_teacher``, flow Euler with CFG) at 2 … 32 steps and the students at 1, 2 and 4
steps, on the same stratified benchmark prompts and sample seeds: GenEval with 95 % intervals, forward
passes per image, and the latency of one whole generation (text encoding, every step, decoding) at
batch 1 and at batch 64 — side by side in one run. Then the paired differences that answer the
chapter's questions: each student step count against the 20-step teacher, and the ablation (the
hybrid against sCM alone and LADD alone, at each step count).
"""
from __future__ import annotations

import argparse

import torch

from cotlab.bench import Bench, best_time, load_shipped, only_option, parse_names, prompt_options
from cotlab.errors import CotlabError
from cotlab.geneval import paired_difference, stratified_prompts
from cotlab.sampling import evaluate_generator, sample
from cotlab.shapes import TAGS
from cotlab.sprint.model import SprintStudent
from cotlab.stats import describe_difference, with_interval

TEACHER, STUDENTS = "sprint_teacher", ("sprint", "sprint_scm", "sprint_ladd")
TEACHER_STEPS, STUDENT_STEPS = (2, 4, 8, 16, 20, 32), (1, 2, 4)
REFERENCE = 20  # the teacher's default steps: what a student is measured against


def latency(model, steps: int, batch: int, cfg: float, seconds: float = 2.0) -> float:
    """Seconds of one generation of ``batch`` images (text encoding, ``steps`` steps, decoding): the
    fastest of the calls that fill ``seconds`` (at least 3) after a warm-up, on the model's device."""
    captions = ["two red circles to the left of a blue square"] * batch
    sync = torch.cuda.synchronize if model.device.type == "cuda" else None
    return best_time(lambda: sample(model, captions, seed=list(range(batch)), steps=steps, cfg=cfg), sync=sync,
                     seconds=seconds)


def bench_sampling(names: list[str] | None = None, every: int = 2, n_samples: int = 4, cfg: float = 4.5,
                   seed: int = 0, batches: tuple[int, ...] = (1, 64), timing_seconds: float = 2.0) -> dict:
    """Every (model, steps) of the module docstring: score, passes, latency; the paired differences.
    ``names`` (default: the teacher and the three students) may be folders; a student is any
    ``SprintStudent``, the teacher the other model, the hybrid the first student; each latency is the
    fastest of the generations that fill ``timing_seconds`` (at least 3)."""
    models = load_shipped(names, (TEACHER, *STUDENTS), "teacher or student")
    students = [name for name, model in models.items() if isinstance(model, SprintStudent)]
    teachers = [name for name in models if name not in students]
    if len(teachers) > 1:
        raise CotlabError(f"bench sampling compares one teacher with its students, got {', '.join(teachers)}")
    metas = stratified_prompts(every)
    rows, judged = [], {}
    for name, model in models.items():
        for steps in STUDENT_STEPS if name in students else TEACHER_STEPS:
            summary = evaluate_generator(model, metas, n_samples, seed, progress=False, steps=steps, cfg=cfg)
            judged[name, steps] = summary["rows"]
            rows.append({"generator": name, "steps": steps, "overall": summary["overall"], "tags": summary["tags"],
                         "interval": summary["interval"]["overall"], "forward_passes": summary["forward_passes"],
                         "latency_s": {str(b): latency(model, steps, b, cfg, timing_seconds)
                                       for b in batches}})
    differences = []

    def compare(a, b):
        d = paired_difference(judged[a], judged[b])["overall"]
        label = lambda name, steps: f"{name}, {steps} step{'s' if steps > 1 else ''}"
        differences.append({"a": label(*a), "b": label(*b), **d})

    reference = next((r for r in rows if r["generator"] in teachers and r["steps"] == REFERENCE), None)
    if students and reference:
        for steps in STUDENT_STEPS:
            compare((students[0], steps), (reference["generator"], REFERENCE))
    for other in students[1:]:  # the ablation: the hybrid against each other student
        for steps in STUDENT_STEPS:
            compare((students[0], steps), (other, steps))
    for r in rows:  # how many times faster than the 20-step teacher
        r["speedup"] = {b: reference["latency_s"][b] / s for b, s in r["latency_s"].items()} if reference else None
    return {"prompts": len(metas), "n_samples": n_samples, "cfg": cfg, "seed": seed, "timing_seconds": timing_seconds,
            "device": str(next(iter(models.values())).device), "threads": torch.get_num_threads(), "rows": rows,
            "differences": differences}


def format_sampling(result: dict) -> str:
    batches = list(result["rows"][0]["latency_s"])
    lines = ["| generator | steps | overall [95 % interval] | " + " | ".join(TAGS) + " | forward passes / image | "
             + " | ".join(f"latency, batch {b} (ms)" for b in batches) + " | speed-up over 20-step teacher |",
             "|---|---|---|" + "---|" * len(TAGS) + "---|" + "---|" * len(batches) + "---|"]
    for r in result["rows"]:
        speedup = " / ".join(f"{r['speedup'][b]:.1f}×" for b in batches) if r["speedup"] else "n/a"
        lines.append(f"| {r['generator']} | {r['steps']} | {with_interval(r['overall'], r['interval'])} | "
                     + " | ".join(f"{r['tags'].get(t, float('nan')):.2f}" for t in TAGS)
                     + f" | {r['forward_passes']} | " + " | ".join(f"{1000 * r['latency_s'][b]:.1f}" for b in batches)
                     + f" | {speedup} |")
    if result["differences"]:
        lines += ["", "| paired comparison (same prompts and seeds) | overall, difference |", "|---|---|"]
        lines += [f"| {d['a']} − {d['b']} | {describe_difference(d['difference'], d['interval'])} |"
                  for d in result["differences"]]
    lines.append(f"\n{result['prompts']} benchmark prompts (every tag) × {result['n_samples']} samples, seed "
                 f"{result['seed']}; the teacher with flow Euler and CFG {result['cfg']:g} (two forward passes per step), "
                 f"the students with the guidance distilled (one). Latency: one whole generation (text, steps, decoding), "
                 f"fastest of the calls that fill {result['timing_seconds']:g} s (at least 3) after a warm-up, on {result['device']} with {result['threads']} threads; speed-up at batch "
                 + " / ".join(batches) + ". 95 % intervals: bootstrap over prompts, samples resampled within; "
                 "differences paired.")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    only_option(parser, "teacher and students")
    prompt_options(parser, every=2, prompts=277, cfg=4.5)


def _run(args: argparse.Namespace) -> dict:
    return bench_sampling(parse_names(args.only), every=args.every, n_samples=args.n_samples, cfg=args.cfg,
                          seed=args.seed)


SAMPLING = Bench(_arguments, _run, format_sampling,
                 "SANA-Sprint: the teacher (sprint_teacher) at 2-32 flow-Euler steps and the students (sprint, sprint_scm, "
                 "sprint_ladd) at 1, 2 and 4 steps on the same stratified benchmark prompts: GenEval with 95 % intervals, "
                 "forward passes, latency at batch 1 and 64, the speed-up over the 20-step teacher, and the paired "
                 "differences (each student step count against the 20-step teacher; the hybrid against each ablation).")
