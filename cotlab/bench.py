"""Benchmarks behind the issues' numbers (``cotlab bench …``): side by side in one run, as tables and JSON.

``bench_evaluator`` measures the exact detector against the renderer's ground truth: on clean
renders, half of them edited to fail (a missing object, a wrong count, colour or relation), and on
the same scenes degraded the way generated images are.

``bench_tokenizers`` puts every shipped tokenizer side by side on the same scenes: rate (tokens and
bits per image), quality (PSNR, SSIM, evaluator agreement, Shapes-FD), codebook use and throughput.

``bench_decoding`` puts the shipped generators side by side on the same prompts: MaskGIT decoding at
several step counts against raster-order AR — GenEval score, forward passes and images per second.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from .geneval import detect, evaluate, truth
from .io import atomic_write_json
from .shapes import COLORS, TAGS, Scene, World

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


def report(result: dict, format_table, json_path: str | None) -> dict:
    """Print a benchmark's table, write its result to ``json_path`` (if given) and return it."""
    print(format_table(result))
    if json_path:
        atomic_write_json(json_path, result)
    return result


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
    return report(result, format_evaluator, json_path)


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


# --- tokenizers --------------------------------------------------------------------------------
TOKENIZERS = ("vq_f8", "vq_f4", "vq_f8_plain", "dcae_f8", "dcae_f4", "dcae_f8_noshortcut",
              "hybrid_f8", "hybrid_f8_alternating")


def best_time(fn, repeats: int = 3, sync=None) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` after one warm-up call (the fastest is the
    least disturbed by other work on the machine); ``sync`` (e.g. ``torch.cuda.synchronize``) is
    called before each clock reading."""
    fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def throughput(model, images: torch.Tensor, repeats: int = 3, **options) -> dict[str, float | None]:
    """Images per second of ``reconstruct`` and of its two halves on one batch, after a warm-up.

    Encoding is ``encode_indices`` (discrete) or ``encode`` (continuous); decoding is timed as
    reconstruct − encode, since ``reconstruct`` is encode then decode. Each time is the best of
    ``repeats`` (the least disturbed by other work on the machine). Without an encode method only
    reconstruct is timed.
    """
    from .tokenizers.metrics import device_of

    images = images.to(device_of(model))
    encode = getattr(model, "encode_indices", None) or getattr(model, "encode", None)
    sync = torch.cuda.synchronize if images.is_cuda else None
    with torch.no_grad():
        t_rec = best_time(lambda: model.reconstruct(images, **options), repeats, sync)
        t_enc = best_time(lambda: encode(images), repeats, sync) if encode is not None else None
    B = len(images)
    return {"reconstruct_per_s": B / t_rec,
            "encode_per_s": B / t_enc if t_enc else None,
            "decode_per_s": B / (t_rec - t_enc) if t_enc and t_rec > t_enc else None}


def load_shipped(names: list[str] | None, every: tuple[str, ...], kind: str) -> dict:
    """``{name: model}`` for the checkpoints ``names`` (each must exist: a missing one raises
    FileNotFoundError naming the command that trains it), or for every shipped one of ``every``
    (missing ones skipped with a note)."""
    from . import harness
    from .errors import CotlabError

    models = {}
    for name in names or every:
        try:
            models[name] = harness.load_checkpoint(name)
        except FileNotFoundError as e:
            if names:
                raise
            print(f"skipped: {e}")
    if not models:
        raise CotlabError(f"no {kind} checkpoint is shipped: train one with cotlab train NAME --profile cpu "
                          f"--ship (NAME one of {', '.join(every)})")
    return models


def bench_tokenizers(names: list[str] | None = None, n: int = 500, seed: int = 0,
                     json_path: str | None = None, world: World = World(), batch_size: int = 256) -> dict:
    """Every shipped tokenizer side by side (``compare_tokenizers``). Named tokenizers must have
    checkpoints; without ``names``, the missing ones are skipped with a note."""
    from .errors import CotlabError
    from .registry import RECIPES

    unknown = [name for name in names or () if name not in RECIPES and "/" not in name]
    if unknown:
        raise CotlabError(f"unknown tokenizer {unknown[0]!r}: choose from {', '.join(TOKENIZERS)}, "
                          "or give a checkpoint folder")
    models = load_shipped(names, TOKENIZERS, "tokenizer")
    return compare_tokenizers(models, n, seed, json_path, world, batch_size)


def compare_tokenizers(models: dict, n: int = 500, seed: int = 0, json_path: str | None = None,
                       world: World = World(), batch_size: int = 256) -> dict:
    """Tokenizers ``{name: model}`` side by side on the same ``n`` scenes: tokens and bits per image,
    PSNR, SSIM, evaluator agreement, Shapes-FD, codebook usage and perplexity, and encode/decode
    throughput on one batch of ``batch_size``. A hybrid gives two rows, discrete-only and
    discrete+residual. Printed as a table, returned as ``{"rows": [...], ...}``, and written to
    ``json_path`` if given."""
    from . import harness
    from .shapes import make_batch
    from .tokenizers.metrics import evaluate_tokenizer, variants

    try:
        classifier = harness.load_checkpoint("shapes_classifier")
        accuracy = harness.checkpoint_card("shapes_classifier")["metrics"].get("cell_accuracy")
    except FileNotFoundError as e:
        classifier, accuracy = None, None
        print(f"no Shapes-FD: {e}")
    images = make_batch(world, np.random.default_rng(seed + 1), batch_size)["image"]  # for timing
    rows = []
    for name, model in tqdm(models.items(), desc="tokenizer bench", mininterval=2):
        for label, options in variants(model).items():
            metrics = evaluate_tokenizer(model, n, seed, world, classifier, **options)
            rows.append({"tokenizer": f"{name} ({label})" if label else name, "checkpoint": name,
                         **options, **metrics, **throughput(model, images, **options)})
    result = {"n": n, "seed": seed, "timing_batch": batch_size,
              "shapes_fd_classifier": None if classifier is None else
              {"checkpoint": "shapes_classifier", "cell_accuracy": accuracy},
              "rows": rows}
    return report(result, format_tokenizers, json_path)


def format_tokenizers(result: dict) -> str:
    def cell(row, key, fmt):
        value = row.get(key)
        return "—" if value is None else format(value, fmt)

    columns = [("tokens", "tokens_per_image", "d"), ("bits", "bits_per_image", ".0f"),
               ("PSNR dB", "psnr", ".2f"), ("SSIM", "ssim", ".4f"), ("agreement", "agreement", ".3f"),
               ("Shapes-FD", "shapes_fd", ".4f"), ("usage", "usage", ".2f"),
               ("perplexity", "perplexity", ".1f"), ("encode img/s", "encode_per_s", ".0f"),
               ("decode img/s", "decode_per_s", ".0f")]
    lines = ["| tokenizer | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    lines += [f"| {r['tokenizer']} | " + " | ".join(cell(r, key, fmt) for _, key, fmt in columns) + " |"
              for r in result["rows"]]
    by_checkpoint = {}
    for r in result["rows"]:
        if "residual" in r:
            by_checkpoint.setdefault(r["checkpoint"], {})[r["residual"]] = r
    for name, pair in by_checkpoint.items():
        if len(pair) == 2:
            d, c = pair[False], pair[True]
            lines.append(f"\n{name}: the residual adds {c['psnr'] - d['psnr']:+.2f} dB PSNR; "
                         f"agreement {d['agreement']:.3f} → {c['agreement']:.3f}; "
                         f"bits ×{c['bits_per_image'] / d['bits_per_image']:.1f}")
    fd = result["shapes_fd_classifier"]
    accuracy = "?" if fd is None or fd["cell_accuracy"] is None else f"{fd['cell_accuracy']:.4f}"
    lines.append(f"\n{result['n']} scenes (seed {result['seed']}); throughput on one batch of "
                 f"{result['timing_batch']}, decode = reconstruct − encode. "
                 + ("Shapes-FD: not computed (no shapes_classifier checkpoint)." if fd is None else
                    f"Shapes-FD in the features of shapes_classifier (cell accuracy {accuracy}); "
                    "not comparable to Inception FID."))
    return "\n".join(lines)


# --- decoding ----------------------------------------------------------------------------------
GENERATORS = ("maskgit", "raster_ar", "maskgit_f4", "raster_ar_f4")


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
    from .generate import evaluate_generator

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


# --- the hybrid residual (DC-AR) -----------------------------------------------------------------
def stratified_prompts(every: int) -> list[dict]:
    """Every ``every``-th benchmark prompt of each tag (every tag keeps its share)."""
    from .geneval import benchmark_prompts

    prompts = benchmark_prompts()
    return [m for tag in TAGS for m in [m for m in prompts if m["tag"] == tag][::every]]


def bench_hybrid(head: str = "dcar_head", every: int = 2, n_samples: int = 4, steps: int = 8, cfg: float = 3.0,
                 seed: int = 0, json_path: str | None = None) -> dict:
    """DC-AR's residual head against the discrete tokens alone (``dcar.compare_residual``) on the
    stratified benchmark prompts: GenEval overall, Shapes-FD, PSNR to the nearest render, time."""
    from .masked_ar.dcar import compare_residual

    model = load_shipped([head], (head,), "residual head")[head]
    result = {"head": head, **compare_residual(model, stratified_prompts(every), n_samples, seed, steps, cfg)}
    return report(result, format_hybrid, json_path)


def format_hybrid(result: dict) -> str:
    lines = ["| variant | GenEval overall | Shapes-FD ↓ | PSNR to nearest render ↑ | s / image |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['overall']:.3f} | {r['shapes_fd']:.3f} | "
                     f"{r['psnr_to_nearest_render']:.2f} dB | {r['seconds_per_image'] * 1e3:.1f} ms |")
    lines.append(f"\nthe residual costs {result['extra_time']:+.1%} time; "
                 f"{result['prompts']} prompts × {result['n_samples']} samples, {result['steps']} steps, "
                 f"cfg {result['cfg']}, seed {result['seed']}.")
    return "\n".join(lines)


# --- verification (notebook 06) ------------------------------------------------------------------
def bench_verification(generator: str = "maskgit", every: int = 4, n_samples: int = 4, candidates: int = 20,
                       scaling_every: int = 3, steps: int = 8, cfg: float = 3.0, seed: int = 0,
                       json_path: str | None = None) -> dict:
    """Every verification strategy of ``verification.evaluate.compare`` on the stratified benchmark
    prompts: the paper's table with its numbers beside ours, the cost, scaling with N, and each
    verifier's precision/recall/AUROC against the exact evaluator."""
    from .verification.evaluate import compare

    model = load_shipped([generator], (generator,), "generator")[generator]
    verifiers = load_shipped(["clip", "orm", "prm", "parm"], ("clip", "orm", "prm", "parm"), "verifier")
    result = compare(model, verifiers, stratified_prompts(every), n_samples=n_samples, N=candidates,
                     scaling_every=scaling_every, steps=steps, cfg=cfg, seed=seed)
    result = {"generator": generator, **{k: v for k, v in result.items() if k != "rows"}}
    return report(result, format_verification, json_path)


def format_verification(result: dict) -> str:
    from .verification.evaluate import STRATEGIES

    tags = list(TAGS)
    short = {"single_object": "single", "two_object": "two", "counting": "count", "colors": "colors",
             "position": "position", "color_attr": "attr"}
    head = " | ".join(short[t] for t in tags)
    lines = [f"| strategy | {head} | **overall** | paper overall | passes / image | verifier calls / image |",
             "|---|" + "---|" * (len(tags) + 4)]
    for name, row in result["table"].items():
        paper = result["paper"].get(name, {}).get("overall")
        lines.append(f"| {STRATEGIES[name]} | " + " | ".join(f"{row.get(t, float('nan')):.3f}" for t in tags)
                     + f" | **{row['overall']:.3f}** | {'' if paper is None else f'{paper:.2f}'} | "
                     f"{row['passes']:.0f} | {row['calls']:.1f} |")
    lines += ["", "The paper's numbers (Show-o on GenEval, best of 20; arXiv 2501.13926 Tables 1 and 5):", "",
              f"| strategy | {head} | overall |", "|---|" + "---|" * (len(tags) + 1)]
    for name, row in result["paper"].items():
        lines.append(f"| {STRATEGIES[name]} | " + " | ".join(f"{row[t]:.2f}" for t in tags) + f" | {row['overall']:.2f} |")
    ns = sorted({int(n) for curve in result["scaling"].values() for n in curve})
    lines += ["", "| N | " + " | ".join(str(n) for n in ns) + " |", "|---|" + "---|" * len(ns)]
    for name, curve in result["scaling"].items():
        curve = {int(n): v for n, v in curve.items()}
        lines.append(f"| {STRATEGIES[name]} | " + " | ".join(f"{curve[n]:.3f}" if n in curve else "" for n in ns) + " |")
    lines += ["", "| verifier | on | precision | recall | AUROC | positives |", "|---|---|---|---|---|---|"]
    for name, by_kind in result["quality"].items():
        for kind, q in by_kind.items():
            lines.append(f"| {name} | {kind} images | {q['precision']:.3f} | {q['recall']:.3f} | {q['auroc']:.3f} | "
                         f"{q['positives']:.2f} |")
    s, p = result["settings"], result["parm"]
    searches = s["prompts"] * s["n_samples"]
    lines.append(f"\nPARM kept {p['mean_kept']:.1f} of {s['N']} paths on average (it pruned every path in "
                 f"{p['none_kept']} of {searches} searches, which then finish the most promising one) "
                 f"and ran {p['steps_run_share']:.0%} of their steps. {s['prompts']} prompts × {s['n_samples']} "
                 f"samples, N = {s['N']}, {s['steps']} steps, cfg {s['cfg']}, seed {s['seed']}; the step-level "
                 f"searches' curves on one prompt in {s['scaling_every']}; {result['seconds'] / 60:.1f} min.")
    return "\n".join(lines)
