"""The verification benchmark of notebook 06 (``cotlab bench verification``): the paper's table.

Every strategy of ``verification.evaluate.compare`` on the stratified benchmark prompts, each
choosing among the same N candidate paths: GenEval with the paper's numbers beside ours, the cost
(forward passes and verifier calls per image), scaling with N, and each verifier's precision, recall
and AUROC against the exact evaluator.
"""
from __future__ import annotations

import argparse

from cotlab.bench import Bench, load_shipped, prompt_options
from cotlab.geneval import stratified_prompts
from cotlab.shapes import TAGS
from cotlab.stats import describe_difference, with_interval
from cotlab.verification.evaluate import STRATEGIES, compare
from cotlab.options import count


def bench_verification(generator: str = "maskgit", every: int = 4, n_samples: int = 4, candidates: int = 20,
                       scaling_every: int = 3, steps: int = 8, cfg: float = 3.0, seed: int = 0) -> dict:
    """Every verification strategy of ``verification.evaluate.compare`` on the stratified benchmark
    prompts: the paper's table with its numbers beside ours, the paired differences, the cost, scaling
    with N, and each verifier's precision/recall/AUROC against the exact evaluator."""
    model = load_shipped([generator], (generator,), "generator")[generator]
    verifiers = load_shipped(["clip", "orm", "prm", "parm"], ("clip", "orm", "prm", "parm"), "verifier")
    result = compare(model, verifiers, stratified_prompts(every), n_samples=n_samples, N=candidates,
                     scaling_every=scaling_every, steps=steps, cfg=cfg, seed=seed)
    return {"generator": generator, **{k: v for k, v in result.items() if k != "rows"}}


def format_verification(result: dict) -> str:
    tags = list(TAGS)
    short = {"single_object": "single", "two_object": "two", "counting": "count", "colors": "colors",
             "position": "position", "color_attr": "attr"}
    head = " | ".join(short[t] for t in tags)
    lines = [f"| strategy | {head} | **overall** [95 % interval] | paper overall | passes / image | "
             "verifier calls / image |", "|---|" + "---|" * (len(tags) + 4)]
    for name, row in result["table"].items():
        paper = result["paper"].get(name, {}).get("overall")
        lines.append(f"| {STRATEGIES[name]} | " + " | ".join(f"{row.get(t, float('nan')):.3f}" for t in tags)
                     + f" | **{with_interval(row['overall'], row['interval']['overall'])}** | "
                     f"{'' if paper is None else f'{paper:.2f}'} | {row['passes']:.0f} | {row['calls']:.1f} |")
    lines += ["", "| comparison (same prompts, same candidates) | overall, paired difference [95 % interval] |",
              "|---|---|"]
    lines += [f"| {STRATEGIES[d['a']]} − {STRATEGIES[d['b']]} | {describe_difference(d['difference'], d['interval'])} |"
              for d in result["differences"]]
    lines += ["", "The paper's numbers (Show-o on GenEval, best of 20; arXiv 2501.13926 Tables 1 and 5):", "",
              f"| strategy | {head} | overall |", "|---|" + "---|" * (len(tags) + 1)]
    for name, row in result["paper"].items():
        lines.append(f"| {STRATEGIES[name]} | " + " | ".join(f"{row[t]:.2f}" for t in tags) + f" | {row['overall']:.2f} |")
    ns = sorted({int(n) for curve in result["scaling"].values() for n in curve})
    lines += ["", "| overall at N candidates | " + " | ".join(str(n) for n in ns) + " |", "|---|" + "---|" * len(ns)]
    for name, curve in result["scaling"].items():
        curve = {int(n): v for n, v in curve.items()}
        ci = {int(n): v for n, v in result["scaling_interval"][name].items()}
        lines.append(f"| {STRATEGIES[name]} | " + " | ".join(with_interval(curve[n], ci[n], 2) if n in curve else ""
                                                           for n in ns) + " |")
    lines += ["", "| verifier | on | precision | recall | AUROC | positives |", "|---|---|---|---|---|---|"]
    for name, by_kind in result["quality"].items():
        for kind, q in by_kind.items():
            ci = q["interval"]
            lines.append(f"| {name} | {kind} images | {with_interval(q['precision'], ci['precision'])} | "
                         f"{with_interval(q['recall'], ci['recall'])} | {with_interval(q['auroc'], ci['auroc'])} | "
                         f"{q['positives']:.2f} |")
    s, p = result["settings"], result["parm"]
    searches = s["prompts"] * s["n_samples"]
    lines.append(f"\nPARM kept {p['mean_kept']:.1f} of {s['N']} paths on average (it pruned every path in "
                 f"{p['none_kept']} of {searches} searches, which then finish the most promising one) "
                 f"and ran {p['steps_run_share']:.0%} of their steps. {s['prompts']} prompts × {s['n_samples']} "
                 f"samples, N = {s['N']}, {s['steps']} steps, cfg {s['cfg']}, seed {s['seed']}; the step-level "
                 f"searches' curves on one prompt in {s['scaling_every']}. 95 % intervals: GenEval's bootstrap over "
                 "prompts, samples resampled within (differences paired); Wilson's for precision and recall; a "
                 "bootstrap over images for AUROC.")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", default="maskgit", help="the generator searched over (default: maskgit)")
    parser.add_argument("--candidates", type=count, default=20, help="N, paths per image (default: 20)")
    parser.add_argument("--steps", type=count, default=8, help="decoding steps (default: 8)")
    parser.add_argument("--scaling-every", type=count, default=3,
                        help="run the step-level searches at every N on every k-th prompt (default: 3)")
    prompt_options(parser, every=4, prompts=139)


def _run(args: argparse.Namespace) -> dict:
    return bench_verification(args.generator, every=args.every, n_samples=args.n_samples, candidates=args.candidates,
                              scaling_every=args.scaling_every, steps=args.steps, cfg=args.cfg, seed=args.seed)


BENCH = Bench(_arguments, _run, format_verification,
              "The paper's comparison (arXiv 2501.13926) on stratified benchmark prompts: each strategy "
              "chooses among the same N candidate paths per image; prints the table with the paper's numbers "
              "beside it, forward passes and verifier calls per image, overall against N, and each "
              "verifier's precision, recall and AUROC against the exact evaluator.")
