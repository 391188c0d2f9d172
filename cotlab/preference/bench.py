"""The capstone of notebook 07 (``cotlab bench capstone``): every way the workbook makes the masked
generator better, in the paper's table — test-time verification (notebook 06), alignment (DPO,
iterative DPO, GRPO) and both together.

Each row is a generator and, optionally, a test-time search over it. For prompt i and sample j the
N candidate paths have seeds path_seed(seed, i, j, c), c < N, exactly as in ``cotlab bench
verification``: a row's one-sample image is candidate 0, best-of-N chooses among the N, PRM, PARM
and PARM++ search over the same seeds. Every row is measured on the stratified benchmark prompts and
on the held-out bindings (``heldout_metadata.jsonl``, never trained on), 4 samples each, with GenEval's
95 % intervals, paired differences for the comparisons the notebook reads, the generator forward
passes per image, and, for one-sample rows, the ORM's mean reward beside the exact score (where
they part, the generator is fooling the reward model). Beside: the ORM's and PARM's AUROC on the
held-out images of the base generator (do the verifiers still judge compositions they never saw?).
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from cotlab import geneval
from cotlab.bench import Bench, load_shipped, prompt_options
from cotlab.errors import CotlabError
from cotlab.io import RUNS_DIR, atomic_write_json, changed_since, git_commit
from cotlab.geneval import benchmark_prompts, stratified_prompts
from cotlab.metrics import to_uint8
from cotlab.sampling import path_seed
from cotlab.shapes import TAGS
from cotlab.stats import describe_difference, with_interval
from cotlab.verification import search
from cotlab.verification.evaluate import PAPER as VERIFICATION_PAPER
from cotlab.verification.metrics import classification
from cotlab.options import count

ROWS = {  # name -> (generator checkpoint, test-time search or None, label), in the table's order
    "baseline": ("maskgit", None, "baseline (maskgit, one sample)"),
    "orm": ("maskgit", "orm", "ORM fine-tuned (best of N)"),
    "prm": ("maskgit", "prm", "PRM fine-tuned (step search)"),
    "parm": ("maskgit", "parm", "PARM"),
    "parm++": ("maskgit", "parm++", "PARM++"),
    "dpo": ("dpo", None, "DPO"),
    "dpo_two_masks": ("dpo_two_masks", None, "DPO, two masks a pair (released code)"),
    "it_dpo": ("it_dpo", None, "iterative DPO"),
    "it_dpo+orm": ("it_dpo", "orm", "iterative DPO + ORM"),
    "it_dpo+parm": ("it_dpo", "parm", "iterative DPO + PARM"),
    "guidance_released": ("dpo_guidance_released", None, "DPO + ORM guidance, released (no gradient)"),
    "guidance": ("dpo_guidance", None, "DPO + ORM guidance that trains"),
    "grpo": ("grpo", None, "GRPO (ORM reward)"),
    "grpo+orm": ("grpo", "orm", "GRPO + ORM"),
    "grpo+parm": ("grpo", "parm", "GRPO + PARM"),
    "grpo_parm": ("grpo_parm", None, "GRPO (PARM reward)"),
    "grpo_oracle": ("grpo_oracle", None, "GRPO (exact evaluator's reward)"),
}
PAPER = {  # Show-o on GenEval (arXiv 2501.13926, Tables 1–3 and 5); the guidance row is its released code's
    **{k: VERIFICATION_PAPER[k] for k in ("baseline", "orm", "prm", "parm", "parm++")},
    "dpo": dict(single_object=.96, two_object=.70, counting=.50, colors=.82, position=.30, color_attr=.43, overall=.62),
    "it_dpo": dict(single_object=.98, two_object=.72, counting=.53, colors=.84, position=.40, color_attr=.46, overall=.65),
    "it_dpo+orm": dict(single_object=.98, two_object=.80, counting=.62, colors=.83, position=.59, color_attr=.54,
                       overall=.72),
    "it_dpo+parm": dict(single_object=.98, two_object=.83, counting=.64, colors=.84, position=.59, color_attr=.62,
                        overall=.74),
    "guidance_released": dict(single_object=.98, two_object=.78, counting=.44, colors=.81, position=.50,
                              color_attr=.48, overall=.67),
}
COMPARISONS = (  # (A, B): A − B, paired, on both prompt sets
    ("dpo", "baseline"), ("dpo_two_masks", "dpo"), ("it_dpo", "dpo"), ("guidance_released", "dpo"), ("guidance", "dpo"),
    ("grpo", "baseline"), ("grpo", "orm"), ("grpo", "it_dpo"), ("grpo+orm", "grpo"), ("grpo_parm", "grpo"), ("grpo_oracle", "grpo"),
    ("it_dpo+parm", "parm"), ("grpo+parm", "parm"))
SETS = ("benchmark", "heldout")


def prompt_sets(every: int) -> dict[str, list[dict]]:
    """The stratified benchmark prompts and the held-out bindings (all 124 for every ≤ 7; a thinner
    subset, every (every // 4)-th, for a quicker look)."""
    return {"benchmark": stratified_prompts(every), "heldout": benchmark_prompts(heldout=True)[::max(1, every // 4)]}


def _row(i: int, j: int, meta: dict, image: torch.Tensor) -> dict:
    correct, reason = geneval.judge(to_uint8(image[None])[0], meta)
    return {"filename": f"{i:05d}/samples/{j:04d}.png", "index": i, "sample": j, "tag": meta["tag"],
            "prompt": meta["prompt"], "correct": correct, "reason": reason}


@torch.no_grad()
def pooled(generator, metas: list[dict], n_samples: int, N: int, orm, parm, seed: int = 0, cfg: float = 3.0,
           steps: int = 8, progress: bool = True) -> dict:
    """One-sample (candidate 0) and best-of-N rows from one pool of N paths per sample (all of a
    prompt's samples in one batch): ``one`` and ``orm`` judged rows, the one-sample images' mean ORM
    reward, the passes per image of each, and every pool image's ORM and PARM P(yes) with its verdict."""
    rows = {"one": [], "orm": []}
    reward, scores = [], {"orm": [], "parm": [], "correct": []}
    passes = 0
    for i, meta in enumerate(tqdm(metas, desc="pool", disable=not progress, mininterval=10)):
        seeds = [path_seed(seed, i, j, c) for j in range(n_samples) for c in range(N)]
        paths = generator.paths([meta["prompt"]] * len(seeds), seeds, steps=steps, cfg=cfg)
        paths.finish()
        finals, captions = paths.images(final=True), [meta["prompt"]] * len(seeds)
        passes = int(paths.passes[0])
        orm_yes = orm.judge(finals, captions)["yes"]
        correct = np.array([geneval.judge(x, meta)[0] for x in to_uint8(finals)]) if N > 1 else None
        if N > 1:
            scores["orm"].append(orm_yes.numpy())
            scores["parm"].append(parm.judge(finals, captions)["yes"].numpy())
            scores["correct"].append(correct)
        for j in range(n_samples):
            pick = slice(j * N, (j + 1) * N)
            rows["one"].append(_row(i, j, meta, finals[pick][0]))
            reward.append(float(orm_yes[pick][0]))
            if N > 1:
                rows["orm"].append(_row(i, j, meta, finals[pick][int(torch.argmax(orm_yes[pick]))]))
    return {"rows": rows, "reward": float(np.mean(reward)), "passes": {"one": passes, "orm": passes * N},
            "scores": {k: np.concatenate(v) for k, v in scores.items()} if N > 1 else None}


@torch.no_grad()
def searched(name: str, generator, judge, metas: list[dict], n_samples: int, N: int, seed: int = 0,
             cfg: float = 3.0, steps: int = 8, progress: bool = True) -> tuple[list[dict], float]:
    """Judged rows and mean passes per image of the test-time search ``name`` (prm, parm, parm++)."""
    rows, passes = [], []
    for i, meta in enumerate(tqdm(metas, desc=name, disable=not progress, mininterval=10)):
        for j in range(n_samples):
            found = search.run(name, generator, meta, [path_seed(seed, i, j, c) for c in range(N)], judge,
                               steps=steps, cfg=cfg)
            rows.append(_row(i, j, meta, found.image))
            passes.append(found.passes)
    return rows, float(np.mean(passes))


def _summary(rows: list[dict], passes: float, **extra) -> dict:
    s = geneval.summarize(rows)
    return {"overall": s["overall"], **s["tags"], "interval": s["interval"], "passes": passes,
            "images": len(rows), **extra}


def settings(every: int, n_samples: int, candidates: int, steps: int, cfg: float, seed: int) -> dict:
    """What makes two capstone runs comparable row for row."""
    return dict(prompts={k: len(v) for k, v in prompt_sets(every).items()}, n_samples=n_samples, N=candidates,
                steps=steps, cfg=cfg, seed=seed, every=every)


def bench_capstone(rows: list[str] | None = None, every: int = 4, n_samples: int = 4, candidates: int = 20,
                   cfg: float = 3.0, steps: int = 8, seed: int = 0, progress: bool = True) -> dict:
    """The capstone table (module docstring) for ``rows`` (default: all of ``ROWS``)."""
    names = rows or list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise CotlabError(f"unknown capstone row(s) {', '.join(unknown)}: choose from {', '.join(ROWS)}")
    start = time.perf_counter()
    generators = load_shipped(sorted({ROWS[n][0] for n in names}), (), "generator")
    judges = load_shipped(["orm", "prm", "parm"], (), "verifier")
    sets = prompt_sets(every)
    judged: dict[str, dict[str, list]] = {n: {} for n in names}
    table: dict[str, dict] = {n: {} for n in names}
    quality = {}
    for generator_name in dict.fromkeys(ROWS[n][0] for n in names):
        model = generators[generator_name]
        mine = [n for n in names if ROWS[n][0] == generator_name]
        N = candidates if any(ROWS[n][1] == "orm" for n in mine) else 1
        for where, metas in sets.items():
            pool = pooled(model, metas, n_samples, N, judges["orm"], judges["parm"], seed, cfg, steps, progress)
            for n in mine:
                verifier = ROWS[n][1]
                if verifier is None:
                    judged[n][where] = pool["rows"]["one"]
                    table[n][where] = _summary(pool["rows"]["one"], pool["passes"]["one"], orm_reward=pool["reward"])
                elif verifier == "orm":
                    judged[n][where] = pool["rows"]["orm"]
                    table[n][where] = _summary(pool["rows"]["orm"], pool["passes"]["orm"])
                else:
                    found, passes = searched(verifier, model, judges["parm" if verifier.startswith("parm") else verifier],
                                             metas, n_samples, candidates, seed, cfg, steps, progress)
                    judged[n][where] = found
                    table[n][where] = _summary(found, passes)
            if generator_name == "maskgit" and where == "heldout" and pool["scores"] is not None:
                s = pool["scores"]
                quality = {name: classification(s[key], s["correct"], intervals=True)
                           for name, key in (("ORM", "orm"), ("PARM", "parm"))}
    differences = []
    for a, b in COMPARISONS:
        if a in judged and b in judged:
            for where in SETS:
                d = geneval.paired_difference(judged[a][where], judged[b][where])["overall"]
                differences.append({"a": a, "b": b, "set": where, **d})
    return {"table": table, "differences": differences, "heldout_quality": quality,
            "paper": {n: PAPER[n] for n in names if n in PAPER},
            "settings": settings(every, n_samples, candidates, steps, cfg, seed),
            "seconds": time.perf_counter() - start}


def same_settings(shipped: dict, wanted: dict) -> None:
    """Refuse to merge rows measured with other settings than the shipped record's."""
    if shipped["result"]["settings"] != wanted:
        raise CotlabError(f"--merge needs the shipped capstone's settings {shipped['result']['settings']}, got "
                          f"{wanted}: run it with those, or the whole table without --merge")


def reproduces(now, shipped, rel: float = 1e-6) -> bool:
    """Whether a row measured again equals the shipped one: the same keys and values, numbers to
    ``rel`` — GenEval's scores are exact, but a learned reward's mean over batches of another size (a
    pool of N = 1 against N = 20) differs in the tenth digit; one verdict changed moves a score by 1e-3."""
    if isinstance(now, dict) and isinstance(shipped, dict):
        return now.keys() == shipped.keys() and all(reproduces(now[k], shipped[k], rel) for k in now)
    if isinstance(now, list) and isinstance(shipped, list):
        return len(now) == len(shipped) and all(reproduces(a, b, rel) for a, b in zip(now, shipped))
    if isinstance(now, float) and isinstance(shipped, float):
        return math.isclose(now, shipped, rel_tol=rel) or (math.isnan(now) and math.isnan(shipped))
    return now == shipped


def merge_into_shipped(result: dict, shipped: dict) -> dict:
    """``result`` (a few rows) added to the shipped capstone record ``shipped``, so that one row need
    not cost the whole table. The settings must be the shipped ones, and a row measured in both must
    reproduce the shipped one (``reproduces``): the same seeds through the same code give the same
    images, so any difference means the code changed since, and then only the whole table is honest;
    so does a checkpoint the shipped rows used changed since their run's commit (git tells). Comparisons
    measured now replace the shipped ones; ``runs`` says which rows each run measured, at which commit."""
    old = shipped["result"]
    same_settings(shipped, result["settings"])
    runs = old.get("runs") or [dict(rows=list(old["table"]), commit=shipped["commit"], date=shipped["date"],
                                    minutes=shipped["minutes"])]
    for run in runs:  # each run's generators and judges, unchanged since that run's commit
        used = [f"data/checkpoints/{name}/model.safetensors" for name in
                sorted({ROWS[n][0] for n in run["rows"]} | {"orm", "prm", "parm"})]
        changed = changed_since(run["commit"], used)
        if changed is None or changed:
            what = "git cannot tell" if changed is None else ", ".join(changed) + " changed"
            raise CotlabError(f"--merge needs the checkpoints the shipped rows used, unchanged since commit "
                              f"{run['commit']}: {what}; run the whole table: cotlab bench capstone --ship")
    for name in sorted(set(old["table"]) & set(result["table"])):
        if not reproduces(json.loads(json.dumps(result["table"][name])), old["table"][name]):
            raise CotlabError(f"row {name} measured now differs from the shipped one (commit {shipped['commit']}): "
                              "the code changed since, so run the whole table: cotlab bench capstone --ship")
    table = {n: result["table"].get(n) or old["table"][n] for n in ROWS if n in result["table"] or n in old["table"]}
    key = lambda d: (COMPARISONS.index((d["a"], d["b"])), SETS.index(d["set"]))  # noqa: E731
    differences = {key(d): d for d in old["differences"]} | {key(d): d for d in result["differences"]}
    return {**result, "table": table, "differences": [differences[k] for k in sorted(differences)],
            "heldout_quality": result["heldout_quality"] or old["heldout_quality"],
            "paper": {n: PAPER[n] for n in table if n in PAPER}, "seconds": old["seconds"] + result["seconds"],
            "runs": runs + [dict(rows=list(result["table"]), commit=git_commit(), date=time.strftime("%Y-%m-%d"),
                                 minutes=round(result["seconds"] / 60, 1))]}


def format_capstone(result: dict) -> str:
    short = {"single_object": "single", "two_object": "two", "counting": "count", "colors": "colors",
             "position": "position", "color_attr": "attr"}
    head = " | ".join(short[t] for t in TAGS)
    lines = []
    for where in SETS:
        prompts = result["settings"]["prompts"][where]
        title = "benchmark prompts" if where == "benchmark" else "held-out bindings (never trained on)"
        lines += [f"**{title}** ({prompts} prompts × {result['settings']['n_samples']})", "",
                  f"| method | {head} | **overall** [95 % interval] | paper overall | passes / image | ORM reward |",
                  "|---|" + "---|" * (len(TAGS) + 4)]
        for name, by_set in result["table"].items():
            row = by_set[where]
            paper = result["paper"].get(name, {}).get("overall") if where == "benchmark" else None
            reward = row.get("orm_reward")
            lines.append(f"| {ROWS[name][2]} | " + " | ".join(f"{row.get(t, float('nan')):.2f}" for t in TAGS)
                         + f" | **{with_interval(row['overall'], row['interval']['overall'])}** | "
                         f"{'' if paper is None else f'{paper:.2f}'} | {row['passes']:.0f} | "
                         f"{'' if reward is None else f'{reward:.3f}'} |")
        lines.append("")
    lines += ["| comparison (same prompts, same seeds) | benchmark | held-out |", "|---|---|---|"]
    by_pair: dict[tuple, dict] = {}
    for d in result["differences"]:
        by_pair.setdefault((d["a"], d["b"]), {})[d["set"]] = describe_difference(d["difference"], d["interval"])
    for (a, b), cells in by_pair.items():
        lines.append(f"| {ROWS[a][2]} − {ROWS[b][2]} | {cells.get('benchmark', '')} | {cells.get('heldout', '')} |")
    if result["heldout_quality"]:
        lines += ["", "| verifier, on maskgit's held-out images | precision | recall | AUROC | positives |",
                  "|---|---|---|---|---|"]
        for name, q in result["heldout_quality"].items():
            ci = q["interval"]
            lines.append(f"| {name} | {with_interval(q['precision'], ci['precision'])} | "
                         f"{with_interval(q['recall'], ci['recall'])} | {with_interval(q['auroc'], ci['auroc'])} | "
                         f"{q['positives']:.2f} |")
    s = result["settings"]
    lines.append(f"\nN = {s['N']} candidates for the searches, {s['steps']} steps, cfg {s['cfg']}, seed {s['seed']}. "
                 "ORM reward: the fine-tuned ORM's mean P(yes) on the one-sample images (beside the exact score: "
                 "a reward far above the score is a generator fooling its reward model). 95 % intervals: GenEval's "
                 "bootstrap over prompts with samples resampled within (differences paired); Wilson's for precision "
                 "and recall; a bootstrap over images for AUROC. Paper: Show-o on GenEval (arXiv 2501.13926).")
    if len(result.get("runs", ())) > 1:
        lines.append("Measured in " + str(len(result["runs"])) + " runs of the same seeds (`--merge`; the rows both "
                     "measured agree to six significant digits): " + "; ".join(
                         f"{', '.join(r['rows'])} at commit {r['commit']} ({r['date']}, {r['minutes']} min)"
                         for r in result["runs"]) + ".")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", metavar="NAME,NAME", help=f"only these rows (default: all of {', '.join(ROWS)})")
    parser.add_argument("--candidates", type=count, default=20, help="N, paths per searched image (default: 20)")
    parser.add_argument("--steps", type=count, default=8, help="decoding steps (default: 8)")
    prompt_options(parser, every=4, prompts=139)
    parser.add_argument("--merge", action="store_true",
                        help="add these rows to the shipped table instead of making a new one (its settings; rows "
                             "measured again must reproduce the shipped numbers exactly)")


def _run(args: argparse.Namespace) -> dict:
    rows = [n.strip() for n in args.rows.split(",") if n.strip()] if args.rows else None
    options = dict(every=args.every, n_samples=args.n_samples, candidates=args.candidates, steps=args.steps,
                   cfg=args.cfg, seed=args.seed)
    shipped = None
    if args.merge:  # checked before the run, not after it
        from cotlab import results

        shipped = results.load("capstone")
        same_settings(shipped, settings(**options))
    result = bench_capstone(rows, **options)
    if shipped is None:
        return result
    try:
        return merge_into_shipped(result, shipped)
    except CotlabError as refused:  # an hour's measurement is kept, not lost
        kept = atomic_write_json(RUNS_DIR / "capstone_unmerged.json", result)
        raise CotlabError(f"{refused} (this run's rows are kept in {kept})") from None


BENCH = Bench(_arguments, _run, format_capstone,
              "The capstone: test-time verification, DPO, iterative DPO and GRPO, alone and together, in the "
              "paper's table with its numbers beside ours — on the benchmark and on the held-out bindings, with "
              "95 % intervals, paired differences, forward passes per image and the ORM's reward beside the exact score.")
