"""Benchmarks (``cotlab bench NAME``): what every benchmark shares, and the evaluator's own benchmark.

A benchmark compares side by side in one run and returns its result, every score with its 95 %
interval. Each topic keeps its benchmarks in its house (``cotlab.tokenizers.bench``,
``cotlab.masked_ar.bench``, ``cotlab.verification.bench``) as a ``Bench``: its options, what it runs
and its table; ``cotlab.registry.BENCHES`` names them for the command line, which adds ``--seed``,
``--json FILE`` and ``--ship`` (the result written to ``data/results/NAME.json``, see
``cotlab.results``) to every one. Here: ``load_shipped``, ``best_time``, the shared options, and
``bench_evaluator`` — the exact detector against the renderer's ground truth, on clean renders (half
of them edited to fail: a missing object, a wrong count, colour or relation) and on the same scenes
degraded the way generated images are.
"""
from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from cotlab.errors import CotlabError
from cotlab.geneval import detect, evaluate, truth
from cotlab.harness import load_checkpoint
from cotlab.shapes import COLORS, TAGS, Scene, World
from cotlab.stats import proportion_interval, with_interval
from cotlab.options import count, weight


@dataclass(frozen=True)
class Bench:
    """A benchmark as ``cotlab bench`` runs it: ``arguments`` adds its own options to its parser,
    ``run`` runs it from the parsed arguments (with ``seed`` among them) and returns its result,
    ``format`` makes its Markdown table (printed, and rendered into the README from the shipped
    result); ``description`` is its ``--help``."""
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]
    format: Callable[[dict], str]
    description: str


def prompt_options(parser: argparse.ArgumentParser, every: int, prompts: int, cfg: float = 3.0) -> None:
    """The options of a benchmark that generates for the stratified benchmark prompts (``cfg``: the
    generators' default guidance weight)."""
    parser.add_argument("--every", type=count, default=every,
                        help=f"use every EVERY-th prompt of each tag (default: {every}, i.e. {prompts} prompts)")
    parser.add_argument("--n-samples", type=count, default=4, help="images per prompt (default: 4)")
    parser.add_argument("--cfg", type=weight, default=cfg, help=f"guidance weight (default: {cfg:g})")


def only_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--only NAME,NAME``: benchmark only these checkpoints (names or folders); read it with ``parse_names``."""
    parser.add_argument("--only", metavar="NAME,NAME", help=f"only these {what} (names or checkpoint folders)")


def parse_names(only: str | None) -> list[str] | None:
    """The names of ``--only NAME,NAME``, or None for the benchmark's default set."""
    return [n.strip() for n in only.split(",") if n.strip()] if only else None

EDITS = {"single_object": "missing", "two_object": "missing", "counting": "count",
         "colors": "colour", "position": "relation", "color_attr": "colour"}


def break_scene(scene: Scene, meta: dict, rng: np.random.Generator, world: World) -> Scene:
    """Edit a scene so that its prompt fails: drop a named object, change a count by one, recolour a
    named object, or swap the cells of the two related objects."""
    objs = list(scene.objects)
    named = [i for i, o in enumerate(objs) if o.shape in {r["class"] for r in meta["include"]}]
    edit = EDITS[meta["tag"]]
    if edit == "missing":
        objs.pop(named[rng.integers(len(named))])
    elif edit == "count":
        if rng.random() < 0.5:
            objs.pop(named[rng.integers(len(named))])
        else:
            used = {(o.row, o.col) for o in objs}
            free = [(r, c) for r in range(world.grid) for c in range(world.grid) if (r, c) not in used]
            cell = free[rng.integers(len(free))]
            objs.append(world.random_object(rng, objs[named[0]].shape,
                                            COLORS[rng.integers(len(COLORS))], cell))
    elif edit == "colour":
        i = named[rng.integers(len(named))]
        objs[i] = replace(objs[i], color=[c for c in COLORS if c != objs[i].color][rng.integers(5)])
    else:  # relation: the two objects trade places
        i, j = named
        objs[i], objs[j] = (replace(objs[i], row=objs[j].row, col=objs[j].col),
                            replace(objs[j], row=objs[i].row, col=objs[i].col))
    return Scene(tuple(objs), scene.grid)


DEGRADATIONS = ("blur", "noise", "colour shift", "size", "no antialiasing", "extra antialiasing")


def degrade(scene: Scene, rng: np.random.Generator, world: World,
            kinds: tuple[str, ...] = DEGRADATIONS) -> np.ndarray:
    """Render a scene the way a generator might get it wrong, with each of ``kinds`` at a random
    strength: Gaussian blur σ ≤ 1 px, noise σ ≤ 10/255, colours shifted by up to ±25 per channel
    (per object), sizes ×[0.8, 1.2], hard edges, or extra smoothing ([1, 2, 1]/4 on 8× supersampling)."""
    objs = scene.objects
    if "size" in kinds:
        objs = tuple(replace(o, size=o.size * rng.uniform(0.8, 1.2)) for o in objs)
    aa = 1 if "no antialiasing" in kinds else 8 if "extra antialiasing" in kinds else world.antialias
    w = replace(world, antialias=aa)
    img = w.render(Scene(objs, scene.grid)).astype(np.float32)
    if "colour shift" in kinds:  # blended by coverage, so edges shift too
        for o in objs:
            alpha, ys, xs = w.coverage(o)
            img[ys, xs] += alpha[..., None] * rng.uniform(-25, 25, size=3)
    if "extra antialiasing" in kinds:
        k = np.array([0.25, 0.5, 0.25])
        img = ndimage.convolve1d(ndimage.convolve1d(img, k, axis=0), k, axis=1)
    if "blur" in kinds:
        img = ndimage.gaussian_filter(img, sigma=(rng.uniform(0, 1),) * 2 + (0,))
    if "noise" in kinds:
        img += rng.normal(0, rng.uniform(0, 10), size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _objects_match(detections, scene: Scene, world: World) -> bool:
    """Whether the detector found exactly the scene's objects (shape, colour, cell)."""
    c = world.cell
    found = sorted((d.shape, d.color, int((d.box[1] + d.box[3]) / 2 // c),
                    int((d.box[0] + d.box[2]) / 2 // c)) for d in detections)
    return found == sorted((o.shape, o.color, o.row, o.col) for o in scene.objects)


def shares(hits: list[bool]) -> tuple[float, list[float]]:
    """The share of hits and its 95 % (Wilson) interval (nan without hits to count: a degradation never drawn)."""
    return (float(np.mean(hits)) if hits else float("nan")), proportion_interval(sum(hits), len(hits))


def bench_evaluator(n: int = 5000, seed: int = 0, world: World = World(), progress: bool = True) -> dict:
    """Verdict accuracy of the detector + GenEval rules against the renderer's ground truth on
    ``n`` scenes (half edited to fail), drawn clean, with one degradation each (the target set),
    and with all degradations at once (a harder set, reported without a target); every share with
    its 95 % interval."""
    rng = np.random.default_rng(seed)
    kinds = ("clean", "degraded", "all degradations")
    trials = {k: [] for k in kinds}  # per image: (tag, degradation, verdict right, objects right)
    seconds, failing, errors = dict.fromkeys(kinds, 0.0), 0, {k: [] for k in kinds}
    for i in tqdm(range(n), desc="evaluator bench", mininterval=2, disable=not progress):
        tag = TAGS[i % len(TAGS)]
        scene, meta = world.sample(rng, tag)
        if i % 2:
            scene = break_scene(scene, meta, rng, world)
        expected, _ = truth(scene, meta, world)
        failing += not expected
        one = DEGRADATIONS[rng.integers(len(DEGRADATIONS))]
        for kind in kinds:
            img = (world.render(scene) if kind == "clean" else
                   degrade(scene, rng, world, (one,)) if kind == "degraded" else
                   degrade(scene, rng, world))
            t0 = time.perf_counter()
            detections, notes = detect(img, world)
            got, reason = evaluate(detections, meta)
            seconds[kind] += time.perf_counter() - t0
            trials[kind].append((tag, one, got == expected, _objects_match(detections, scene, world)))
            if got != expected and len(errors[kind]) < 5:
                errors[kind].append({"prompt": meta["prompt"], "expected": expected,
                                     "reason": reason or "; ".join(notes)})
    result = {}
    for kind, rows in trials.items():
        verdict = [r[2] for r in rows]
        per_tag = {t: shares([r[2] for r in rows if r[0] == t]) for t in TAGS}
        result[kind] = {"images": len(rows), "failing_share": failing / n,
                        "verdict_accuracy": shares(verdict)[0], "object_recovery": shares([r[3] for r in rows])[0],
                        "interval": {"verdict_accuracy": shares(verdict)[1],
                                     "object_recovery": shares([r[3] for r in rows])[1]},
                        "images_per_s": len(rows) / seconds[kind],
                        "per_tag": {t: v for t, (v, _) in per_tag.items()},
                        "per_tag_interval": {t: ci for t, (_, ci) in per_tag.items()},
                        "example_errors": errors[kind]}
    per_kind = {d: shares([r[2] for r in trials["degraded"] if r[1] == d]) for d in DEGRADATIONS}
    result["degraded"]["per_degradation"] = {d: v for d, (v, _) in per_kind.items()}
    result["degraded"]["per_degradation_interval"] = {d: ci for d, (_, ci) in per_kind.items()}
    return result


def format_evaluator(result: dict) -> str:
    def share(value, interval):
        return with_interval(value, interval, 4)

    lines = ["| images | n | built to fail | verdict accuracy [95 % interval] | objects recovered | images/s |",
             "|---|---|---|---|---|---|"]
    for kind, r in result.items():
        lines.append(f"| {kind} | {r['images']} | {r['failing_share']:.2f} | "
                     f"{share(r['verdict_accuracy'], r['interval']['verdict_accuracy'])} | "
                     f"{share(r['object_recovery'], r['interval']['object_recovery'])} | {r['images_per_s']:.0f} |")
    lines += ["", "| task (verdict accuracy) | " + " | ".join(result) + " |", "|---|" + "---|" * len(result)]
    for t in TAGS:
        lines.append(f"| {t} | " + " | ".join(share(r["per_tag"][t], r["per_tag_interval"][t])
                                           for r in result.values()) + " |")
    degraded = result["degraded"]
    lines += ["", "| one degradation | verdict accuracy |", "|---|---|"]
    lines += [f"| {d} | {share(a, degraded['per_degradation_interval'][d])} |"
              for d, a in degraded["per_degradation"].items()]
    lines.append("\nIntervals: 95 %, Wilson's for a share of independent scenes.")
    return "\n".join(lines)


def _evaluator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=count, default=5000, help="number of scenes (default: 5000)")


EVALUATOR = Bench(_evaluator_arguments, lambda args: bench_evaluator(args.n, args.seed), format_evaluator,
                  "The exact GenEval evaluator against the renderer's ground truth on N scenes (half edited to "
                  "fail): verdict accuracy and objects recovered, on clean renders, with one degradation each "
                  "and with all at once; images/s.")


def best_time(fn, repeats: int = 3, sync=None, seconds: float = 0.0) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` after one warm-up call (the fastest is the
    least disturbed by other work on the machine), or of as many calls as fill ``seconds`` where that is
    more (a 15 ms call timed three times is at the mercy of one scheduler hiccup); ``sync`` (e.g.
    ``torch.cuda.synchronize``) is called before each clock reading."""
    def timed() -> float:
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        return time.perf_counter() - t0

    warm_up = timed()
    repeats = max(repeats, math.ceil(seconds / max(warm_up, 1e-9)))
    return min(timed() for _ in range(repeats))


def load_shipped(names: list[str] | None, every: tuple[str, ...], kind: str) -> dict:
    """``{name: model}`` for the checkpoints ``names`` (each must exist: a missing one raises
    FileNotFoundError naming the command that trains it), or for every shipped one of ``every``
    (missing ones skipped with a note)."""
    models = {}
    for name in names or every:
        try:
            models[name] = load_checkpoint(name)
        except FileNotFoundError as e:
            if names:
                raise
            print(f"skipped: {e}")
    if not models:
        raise CotlabError(f"no {kind} checkpoint is shipped: train one with cotlab train NAME --profile cpu "
                          f"--ship (NAME one of {', '.join(every)})")
    return models
