"""Benchmarks behind the issues' numbers (``cotlab bench …``): side by side in one run, as tables and JSON.

``bench_evaluator`` measures the exact detector against the renderer's ground truth: on clean
renders, half of them edited to fail (a missing object, a wrong count, colour or relation), and on
the same scenes degraded the way generated images are.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from .geneval import detect, evaluate, truth
from .io import atomic_write_json
from .shapes import COLORS, TAGS, Obj, Scene, World

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


def bench_evaluator(n: int = 5000, seed: int = 0, json_path: str | None = None,
                    world: World = World()) -> dict:
    """Verdict accuracy of the detector + GenEval rules against the renderer's ground truth on
    ``n`` scenes (half edited to fail), drawn clean, with one degradation each (the target set),
    and with all degradations at once (a harder set, reported without a target)."""
    rng = np.random.default_rng(seed)
    stats = {k: {"images": 0, "verdict": 0, "objects": 0, "failing": 0, "seconds": 0.0,
                 "errors": []} for k in ("clean", "degraded", "all degradations")}
    per_tag = {k: {t: [0, 0] for t in TAGS} for k in stats}
    per_kind = {d: [0, 0] for d in DEGRADATIONS}
    for i in tqdm(range(n), desc="evaluator bench", mininterval=2):
        tag = TAGS[i % len(TAGS)]
        scene, meta = world.sample(rng, tag)
        if i % 2:
            scene = break_scene(scene, meta, rng, world)
        expected, _ = truth(scene, meta, world)
        one = DEGRADATIONS[rng.integers(len(DEGRADATIONS))]
        for kind in stats:
            img = (world.render(scene) if kind == "clean" else
                   degrade(scene, rng, world, (one,)) if kind == "degraded" else
                   degrade(scene, rng, world))
            t0 = time.perf_counter()
            detections, notes = detect(img, world)
            got, reason = evaluate(detections, meta)
            s = stats[kind]
            s["seconds"] += time.perf_counter() - t0
            s["images"] += 1
            s["failing"] += not expected
            s["verdict"] += got == expected
            s["objects"] += _objects_match(detections, scene, world)
            per_tag[kind][tag][0] += got == expected
            per_tag[kind][tag][1] += 1
            if kind == "degraded":
                per_kind[one][0] += got == expected
                per_kind[one][1] += 1
            if got != expected and len(s["errors"]) < 5:
                s["errors"].append({"prompt": meta["prompt"], "expected": expected,
                                    "reason": reason or "; ".join(notes)})
    result = {}
    for kind, s in stats.items():
        result[kind] = {"images": s["images"],
                        "failing_share": s["failing"] / s["images"],
                        "verdict_accuracy": s["verdict"] / s["images"],
                        "object_recovery": s["objects"] / s["images"],
                        "images_per_s": s["images"] / s["seconds"],
                        "per_tag": {t: a / m for t, (a, m) in per_tag[kind].items() if m},
                        "example_errors": s["errors"]}
    result["degraded"]["per_degradation"] = {d: a / m for d, (a, m) in per_kind.items() if m}
    print(format_evaluator(result))
    if json_path:
        atomic_write_json(json_path, result)
    return result


def format_evaluator(result: dict) -> str:
    lines = ["| images | n | built to fail | verdict accuracy | objects recovered | images/s |",
             "|---|---|---|---|---|---|"]
    for kind, r in result.items():
        lines.append(f"| {kind} | {r['images']} | {r['failing_share']:.2f} | "
                     f"{r['verdict_accuracy']:.4f} | {r['object_recovery']:.4f} | "
                     f"{r['images_per_s']:.0f} |")
    lines += ["", "| task | " + " | ".join(result) + " |", "|---|" + "---|" * len(result)]
    for t in TAGS:
        lines.append(f"| {t} | " + " | ".join(f"{r['per_tag'][t]:.4f}" for r in result.values()) + " |")
    lines += ["", "| one degradation | verdict accuracy |", "|---|---|"]
    lines += [f"| {d} | {a:.4f} |" for d, a in result["degraded"]["per_degradation"].items()]
    return "\n".join(lines)
