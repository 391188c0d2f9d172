"""The paper's comparison on the Shapes benchmark: every verification strategy, its GenEval score, its
cost, its scaling with N, and every verifier's precision/recall/AUROC against the exact evaluator.

For prompt i and sample j the N candidate paths have seeds path_seed(seed, i, j, c), c < N, in
every strategy, so all strategies choose among the same candidates, and — a path's tokens depending
only on its seed — best-of-n for n < N is read off the same N paths (the first n), as is PARM at n
(its per-path decisions do not depend on the other paths; a resumed path ends as its uninterrupted
twin). The step-level PRM search branches differently for each N, so its curve is run for each N,
on every ``scaling_every``-th prompt.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from cotlab import geneval
from cotlab.metrics import to_uint8
from cotlab.sampling import path_seed
from cotlab.verification import search
from cotlab.verification.metrics import classification, clip_probability

STRATEGIES = {"baseline": "baseline (one sample)",  # name -> the paper's row, in its order
              **{name: verifier.label for name, verifier in search.VERIFIERS.items()}}
PAPER = {  # Show-o on GenEval, best-of-20 (arXiv 2501.13926, Tables 1 and 5); PARM++ from the Table 5 base
    "baseline": dict(single_object=.95, two_object=.52, counting=.49, colors=.82, position=.11, color_attr=.28, overall=.53),
    "clip": dict(single_object=.99, two_object=.63, counting=.63, colors=.84, position=.19, color_attr=.39, overall=.61),
    "orm": dict(single_object=.99, two_object=.72, counting=.65, colors=.84, position=.25, color_attr=.33, overall=.63),
    "clip-prm": dict(single_object=.98, two_object=.51, counting=.54, colors=.82, position=.11, color_attr=.23, overall=.53),
    "prm": dict(single_object=.98, two_object=.55, counting=.54, colors=.83, position=.13, color_attr=.29, overall=.55),
    "parm": dict(single_object=.99, two_object=.77, counting=.68, colors=.86, position=.29, color_attr=.45, overall=.67),
    "parm++": dict(single_object=.99, two_object=.71, counting=.69, colors=.95, position=.36, color_attr=.49, overall=.70),
}


COMPARISONS = (  # (A, B): A − B, paired, in the table's order
    *[(name, "baseline") for name in STRATEGIES if name != "baseline"],
    ("orm", "clip"), ("prm", "clip-prm"), ("prm", "orm"), ("parm", "orm"), ("parm++", "parm"), ("oracle", "orm"))


def parm_at(trace: dict, pool_yes: np.ndarray, n: int) -> int:
    """PARM's choice among the first n paths, from a PARM run over N ≥ n paths (its per-path
    decisions) and PARM's ``yes`` on every path's final (for the fallback)."""
    alive = ~trace["pruned"][:n]
    if alive.any():
        return int(np.flatnonzero(alive)[np.argmax(pool_yes[:n][alive])])
    return int(np.nanargmax(trace["potential"][:n]))


def compare(generator, verifiers: dict, metas: list[dict], n_samples: int = 4, N: int = 20,
            scaling: tuple[int, ...] = (1, 2, 4, 8, 16, 20), scaling_every: int = 3, steps: int = 8,
            cfg: float = 3.0, seed: int = 0, rounds: int = 3, progress: bool = True) -> dict:
    """Run every strategy on ``metas`` × ``n_samples`` with N candidates (module docstring).

    Returns ``table`` (strategy -> GenEval summary with 95 % intervals + passes and calls per image),
    ``differences`` (the paired differences of ``COMPARISONS``), ``scaling`` (strategy -> {n: overall})
    and ``scaling_interval``, ``quality`` (verifier -> final/step precision, recall, AUROC, with
    intervals), ``rows`` (strategy -> judged rows), ``parm`` (pruning facts) and ``seconds``."""
    clip, orm, prm, parm = (verifiers[k] for k in ("clip", "orm", "prm", "parm"))
    step_scorers = {"clip-prm": search.clip_scorer(clip), "prm": search.reward_scorer(prm)}
    options = dict(steps=steps, cfg=cfg)
    scaling = tuple(n for n in scaling if n <= N)
    rows = {k: [] for k in STRATEGIES}
    curve_rows = {k: {n: [] for n in scaling} for k in STRATEGIES if k not in ("baseline", "parm++")}
    cost = {k: [] for k in STRATEGIES}
    final_scores = {k: [] for k in ("clip", "orm", "prm", "parm", "correct")}
    step_scores = {k: [] for k in ("clip", "prm", "parm", "final")}
    parm_facts = {"kept": [], "steps_run": [], "clear_at": [], "resumed": 0}
    start = time.perf_counter()
    for i, meta in enumerate(tqdm(metas, desc="verification", disable=not progress, mininterval=5)):
        caption = meta["prompt"]
        seeds_of = [[path_seed(seed, i, j, c) for c in range(N)] for j in range(n_samples)]

        def add(name, j, image, passes, calls, n=None):
            correct, reason = geneval.judge(to_uint8(image[None])[0], meta)
            row = {"filename": f"{i:05d}/samples/{j:04d}.png", "index": i, "sample": j, "tag": meta["tag"],
                   "prompt": caption, "correct": correct, "reason": reason}
            if n is None:
                rows[name].append(row)
                cost[name].append((passes, calls))
            else:
                curve_rows[name][n].append(row)

        # the pool: N full paths per sample (all samples in one batch), judged and scored by every verifier
        pool = generator.paths([caption] * (n_samples * N), [s for seeds in seeds_of for s in seeds], **options)
        watched = [j * N + c for j in range(n_samples) for c in range(2)]  # step images of two paths per sample
        step_images, step_t = [], []
        while not bool(pool.done().all()):
            pool.advance()
            step_images.append(pool.images(watched))
            step_t += [float(pool.position[0]) / pool.steps] * len(watched)
        all_finals = pool.images(final=True)  # (n_samples·N, 3, H, W)
        captions = [caption] * len(all_finals)
        all_correct = np.array([geneval.judge(x, meta)[0] for x in to_uint8(all_finals)])
        all_scores = {"clip": clip_probability(clip, all_finals, captions).numpy(),
                      "orm": orm.judge(all_finals, captions)["yes"].numpy(),
                      "prm": prm.judge(all_finals, captions)["yes"].numpy(),
                      "parm": parm.judge(all_finals, captions)["yes"].numpy(), "correct": all_correct}
        for k, v in all_scores.items():
            final_scores[k].append(v)
        per_path = int(pool.passes[0])
        step_images, step_t = torch.cat(step_images), torch.tensor(step_t)  # (T·W, 3, H, W), (T·W,)
        step_captions = [caption] * len(step_images)
        step_scores["clip"].append(clip_probability(clip, step_images, step_captions).numpy())
        step_scores["prm"].append(prm.judge(step_images, step_captions, step_t)["yes"].numpy())
        step_scores["parm"].append(parm.judge(step_images, step_captions, step_t)["potential"].numpy())
        step_scores["final"].append(np.tile(all_correct[watched], steps))
        for j, seeds in enumerate(seeds_of):
            pick = slice(j * N, (j + 1) * N)
            finals, correct = all_finals[pick], all_correct[pick]
            scores = {"clip": all_scores["clip"][pick], "orm": all_scores["orm"][pick],
                      "oracle": correct.astype(float)}
            parm_yes = all_scores["parm"][pick]
            add("baseline", j, finals[0], per_path, 0)
            for name in ("clip", "orm", "oracle"):
                add(name, j, finals[int(np.argmax(scores[name]))], per_path * N, N)
                for n in scaling:
                    add(name, j, finals[int(np.argmax(scores[name][:n]))], 0, 0, n)

            # PARM, with real pruning, then PARM++'s reflection on the same paths
            result = search.parm_search(generator, caption, seeds, parm, **options)
            add("parm", j, result.image, result.passes, result.calls)
            trace = result.trace
            parm_facts["kept"].append(int((~trace["pruned"]).sum()))
            parm_facts["steps_run"].append(trace["steps_run"].tolist())
            parm_facts["clear_at"].append(trace["clear_at"].tolist())
            parm_facts["resumed"] += int(trace["pruned"].all())
            for n in scaling:
                add("parm", j, finals[parm_at(trace, parm_yes, n)], 0, 0, n)
            refined = search.reflect(result, parm, caption, rounds)
            add("parm++", j, refined.image, refined.passes, refined.calls)

            # step-level PRM search: at N, and over the scaling Ns on every scaling_every-th prompt
            for name in ("clip-prm", "prm"):
                for n in sorted(set(scaling) | {N}):
                    if n != N and i % scaling_every:
                        continue
                    found = search.step_search(generator, caption, seeds[:n], step_scorers[name], **options)
                    if n == N:
                        add(name, j, found.image, found.passes, found.calls)
                    if n in scaling:
                        add(name, j, found.image, 0, 0, n)

    table = {}
    for name in STRATEGIES:
        summary = geneval.summarize(rows[name])
        passes, calls = np.array(cost[name]).mean(0)
        table[name] = {"overall": summary["overall"], **summary["tags"], "interval": summary["interval"],
                       "passes": float(passes), "calls": float(calls), "images": len(rows[name])}
    differences = [{"a": a, "b": b, **geneval.paired_difference(rows[a], rows[b])["overall"]} for a, b in COMPARISONS]
    curves, curve_intervals = {}, {}
    for name, by_n in curve_rows.items():
        summaries = {n: geneval.summarize(r) for n, r in by_n.items() if r}
        curves[name] = {n: s["overall"] for n, s in summaries.items()}
        curve_intervals[name] = {n: s["interval"]["overall"] for n, s in summaries.items()}
    finals_cat = {k: np.concatenate(v) for k, v in final_scores.items()}
    steps_cat = {k: np.concatenate(v) for k, v in step_scores.items()}
    quality = {}
    for name, key in (("CLIPScore (zero-shot)", "clip"), ("ORM", "orm"), ("PRM", "prm"), ("PARM", "parm")):
        quality[name] = {"final": classification(finals_cat[key], finals_cat["correct"], intervals=True)}
        if key != "orm":
            quality[name]["step"] = classification(steps_cat[key], steps_cat["final"], intervals=True)
    kept = np.array(parm_facts["kept"])
    facts = {"mean_kept": float(kept.mean()), "none_kept": parm_facts["resumed"],
             "steps_run_share": float(np.mean(parm_facts["steps_run"]) / steps),
             "clear_at": parm_facts["clear_at"], "steps_run": parm_facts["steps_run"]}
    return {"table": table, "differences": differences, "scaling": curves, "scaling_interval": curve_intervals,
            "quality": quality, "rows": rows, "parm": facts,
            "paper": PAPER, "settings": dict(prompts=len(metas), n_samples=n_samples, N=N, steps=steps, cfg=cfg,
                                             seed=seed, scaling_every=scaling_every, rounds=rounds),
            "seconds": time.perf_counter() - start}
