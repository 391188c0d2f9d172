"""GenEval on the Shapes world: an exact detector, GenEval's scoring rules, and its folder layout.

GenEval (Ghosh et al., arXiv 2310.11513) asks an object detector what an image contains and checks
each prompt's clauses: the named objects are found (the top-``count`` detections of the class), a
count is exact (the exclude clause: fewer than n + 1), a colour is the detected object's, and a
position holds between box centres after GenEval's margin,

    offset' = sign(offset) · max(|offset| − 0.1 · (dim_A + dim_B), 0),   (dx, dy) = offset' / |offset|

with "left of" meaning dx < −0.5 (likewise right of, above, below). A task's score is the mean over
its images; **overall is the unweighted mean of the six task scores**.

The Shapes world lets the detector be exact instead of learned: the background is plain, so every
object is a connected blob whose colour is the *direction* of (pixel − background), unchanged by
antialiasing; its shape is the template (drawn by the world's own renderer, at the blob's area and
centroid) that best matches the blob's coverage. It reports what it found and why an image fails.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import CotlabError
from .io import DATA_DIR, atomic_write_json, atomic_write_text, file_to_write
from .stats import LEVEL, describe_difference, quantile_interval, with_interval
from .shapes import (BACKGROUND, COLORS, PALETTE, RELATIONS, SHAPES, TAGS, Obj, Scene, World,
                     all_prompts, inside)

POSITION_THRESHOLD = 0.1  # GenEval's margin, as a share of the two boxes' sizes
MIN_CONFIDENCE = 0.5  # below this template fit a blob is "unrecognised", not an object
FOREGROUND = 45  # a pixel is foreground when a channel differs from the background by more


def _shape_moments(n: int = 800) -> tuple[dict, dict]:
    """Each shape's centroid offset below its box centre and its spread ⟨ρ²⟩, in units of the
    half-size r (e.g. circle: 0 and 1/2; triangle: 1/3 and 7/18), measured on a fine grid."""
    u = (np.arange(n) + 0.5) / n * 2 - 1
    uu, vv = np.meshgrid(u, u)
    dy, spread = {}, {}
    for s in SHAPES:
        m = inside(s, uu, vv)
        x, y = uu[m], vv[m]
        dy[s] = float(y.mean())
        spread[s] = float(((x - x.mean()) ** 2 + (y - y.mean()) ** 2).mean())
    return dy, spread


SHAPE_CENTROID_DY, SHAPE_SPREAD = _shape_moments()


@dataclass
class Detection:
    """An object the detector found: class, colour, box (x0, y0, x1, y1) in pixels, and how well the
    class's template fits (1 = perfectly)."""
    shape: str
    color: str
    box: tuple[float, float, float, float]
    confidence: float


# --- detection ---------------------------------------------------------------------------------
def _directions() -> np.ndarray:
    d = np.array([PALETTE[c] for c in COLORS], np.float32) - np.array(BACKGROUND, np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)  # (C, 3)


_DIRS = _directions()


def detect(image: np.ndarray, world: World = World()) -> tuple[list[Detection], list[str]]:
    """Objects in an (H, W, 3) uint8 image, most confident first, and notes on blobs it rejected."""
    img = image.astype(np.float32)
    bg = np.median(img.reshape(-1, 3), axis=0)  # the background fills most of the image
    diff = img - bg  # (H, W, 3)
    fg = np.abs(diff).max(-1) > FOREGROUND
    labels, n = ndimage.label(fg)
    detections, notes = [], []
    for piece in _pieces(labels, n, world):
        det, note = _fit(diff, piece, labels, world)
        if det is not None:
            detections.append(det)
        elif note:
            notes.append(note)
    detections.sort(key=lambda d: -d.confidence)
    return detections, notes


def _pieces(labels: np.ndarray, n: int, world: World):
    """Masks of candidate objects: connected blobs, cut along grid lines when larger than a cell
    (objects sit in cells, so two that touch are told apart by their cells)."""
    c = world.cell
    for sl, k in zip(ndimage.find_objects(labels), range(1, n + 1)):
        mask = labels == k
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if max(h, w) <= 1.25 * c:
            yield mask
            continue
        for r in range(sl[0].start // c, (sl[0].stop - 1) // c + 1):
            for q in range(sl[1].start // c, (sl[1].stop - 1) // c + 1):
                part = np.zeros_like(mask)
                part[r * c:(r + 1) * c, q * c:(q + 1) * c] = mask[r * c:(r + 1) * c, q * c:(q + 1) * c]
                if part.any():
                    yield part


def _fit(diff: np.ndarray, mask: np.ndarray, labels: np.ndarray, world: World):
    """Colour and shape of one blob.

    Colour: the palette direction closest to the direction of Σ (pixel − background) over the
    blob's strongest pixels. Shape: the blob's mass m = projection on that direction is compared,
    normalised (m / Σm), with each shape's template drawn by the renderer. A template is placed by
    the blob's centroid and sized by its spread, which blur (σ) and pixel integration inflate:

        ⟨ρ²⟩ = c_shape · r² + 2σ² + 2/12,    c = 1/2 (circle), 2/3 (square), 7/18 (triangle), …

    so each (shape, σ) hypothesis gives r, and the best-matching one names the shape.
    """
    strength = np.linalg.norm(diff, axis=-1)  # (H, W)
    core = mask & (strength >= 0.7 * strength[mask].max())
    color_idx = int(np.argmax(_DIRS @ diff[core].sum(0)))
    color = COLORS[color_idx]
    # the blob's mass; the region grows by two pixels to catch blurred edges, not other blobs
    region = ndimage.binary_dilation(mask, iterations=2) & ((labels == 0) | mask)
    scale = float(np.linalg.norm(np.array(PALETTE[color], float) - BACKGROUND))
    m = np.where(region, diff @ _DIRS[color_idx] / scale, 0.0)  # (H, W), ≈ coverage
    mass = m.sum()
    if mass < 2.5:  # specks of noise
        return None, ""
    ys, xs = np.mgrid[0:m.shape[0], 0:m.shape[1]] + 0.5
    cx, cy = (m * xs).sum() / mass, (m * ys).sum() / mass
    spread = (m * ((xs - cx) ** 2 + (ys - cy) ** 2)).sum() / mass  # ⟨ρ²⟩
    best = (-np.inf, None, None)
    for shape in SHAPES:
        for sigma, aa in ((0.0, 1), (0.0, 4), (0.4, 4), (0.7, 4), (1.0, 4), (1.3, 4)):
            r2 = (spread - 2 * sigma ** 2 - 2 / 12) / SHAPE_SPREAD[shape]
            if r2 <= 0.5:
                continue
            r = math.sqrt(r2)
            obj = _object_at(shape, color, cx, cy - SHAPE_CENTROID_DY[shape] * r, r, world)
            t = np.zeros_like(m)
            cov, tys, txs = replace(world, antialias=aa).coverage(obj)
            t[tys, txs] = cov
            if sigma:
                t = ndimage.gaussian_filter(t, sigma)
            if t.sum() <= 0:  # the template fell outside the image
                continue
            fit = 1 - 0.5 * np.abs(m / mass - t / t.sum()).sum()  # 1 − total variation distance
            if fit > best[0]:
                best = (fit, shape, world.box(obj))
    confidence, shape, box = best
    if shape is None or confidence < MIN_CONFIDENCE:
        return None, (f"an unrecognised {color} blob at ({cx:.0f}, {cy:.0f})"
                      + (f" (best fit: {shape}, {confidence:.2f})" if shape else ""))
    return Detection(shape, color, tuple(round(b, 2) for b in box), round(float(confidence), 3)), ""


def _object_at(shape, color, cx, cy, r, world: World) -> Obj:
    """The object of half-size r centred at pixel (cx, cy), in the world's cell coordinates."""
    c = world.cell
    row, col = int(min(max(cy // c, 0), world.grid - 1)), int(min(max(cx // c, 0), world.grid - 1))
    return Obj(shape, color, row, col, dx=cx / c - col - 0.5, dy=cy / c - row - 0.5, size=2 * r / c)


def nearest_render(image: np.ndarray, world: World = World()) -> np.ndarray:
    """The clean render closest to what an (H, W, 3) uint8 image shows: its detected objects redrawn
    by the world's renderer, each with its brightness (tone τ) fitted by least squares. Over an
    object's pixels, of coverage a and colour c on background b, x ≈ b (1 − a) + τ c a, so

        τ = Σ (x − b (1 − a)) · c a / Σ ‖c a‖².

    PSNR(image, nearest_render(image)) measures how cleanly a generator draws, whatever it drew."""
    objects = []
    for d in detect(image, world)[0]:
        x0, y0, x1, y1 = d.box
        obj = _object_at(d.shape, d.color, (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, world)
        alpha, ys, xs = world.coverage(obj)  # (h, w)
        ca = alpha[..., None] * np.array(PALETTE[d.color], np.float32)  # (h, w, 3)
        x = image[ys, xs].astype(np.float32) - np.array(BACKGROUND, np.float32) * (1 - alpha[..., None])
        tone = float((x * ca).sum() / max(float((ca ** 2).sum()), 1e-6))
        objects.append(replace(obj, tone=float(np.clip(tone, 0.5, 1.2))))
    return world.render(Scene(tuple(objects), world.grid))


# --- GenEval's rules ---------------------------------------------------------------------------
def relative_position(box_a, box_b) -> set[str]:
    """GenEval's relations of box A to box B (centres, with the margin of the module docstring)."""
    a, b = np.array(box_a, float).reshape(2, 2), np.array(box_b, float).reshape(2, 2)
    offset = a.mean(0) - b.mean(0)  # (dx, dy), y down
    dims = (a[1] - a[0]) + (b[1] - b[0])
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * dims, 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels


CLAUSES = ("missing", "count", "color", "position")  # the kinds of failing clause, for PARM++'s reflection


@dataclass
class Verdict:
    """GenEval's verdict on one image, with what a reflection needs: the ``kinds`` of the failing
    clauses (from ``CLAUSES``), the detections ``kept`` — those that satisfy their clause — and
    whether an object is ``lacking`` (too few found, or one in the wrong place)."""
    correct: bool
    reasons: list[str]
    kinds: list[str]
    kept: list[Detection]
    lacking: bool = False


def check(detections: list[Detection], meta: dict) -> Verdict:
    """Apply GenEval's rules (module docstring) to detections, most confident first."""
    by_class: dict[str, list[Detection]] = {}
    for d in detections:
        by_class.setdefault(d.shape, []).append(d)
    verdict, groups = Verdict(True, [], [], []), []

    def fail(kind: str, reason: str) -> None:
        verdict.correct = False
        verdict.kinds.append(kind)
        verdict.reasons.append(reason)

    for req in meta.get("include", []):
        cls, n = req["class"], req["count"]
        found = by_class.get(cls, [])[:n]
        matched = len(found) >= n
        if not matched:
            fail("count" if n > 1 else "missing", f"expected {n} {cls}, found {len(found)}")
            verdict.kept += found
            verdict.lacking = True
        elif "color" in req:
            colors = [d.color for d in found]
            if colors.count(req["color"]) < n:
                matched = False
                seen = ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                fail("color", f"expected {req['color']} {cls}, found {seen}")
                verdict.kept += [d for d in found if d.color == req["color"]]
        if matched and "position" in req:
            rel, target = req["position"]
            if groups[target] is None:
                matched = False
                verdict.lacking = True
                fail("position", f"no target for {cls} to be {rel}")
            else:
                for d in found:
                    for t in groups[target]:
                        true_rels = relative_position(d.box, t.box)
                        if rel not in true_rels:
                            matched = False
                            verdict.lacking = True
                            where = " and ".join(sorted(true_rels)) or "level with"
                            fail("position", f"expected {cls} {rel} {t.shape}, found it {where}")
                            break
                    if not matched:
                        break
        if matched:
            verdict.kept += found
        groups.append(found if matched else None)
    for req in meta.get("exclude", []):
        cls, n = req["class"], req["count"]
        if len(by_class.get(cls, [])) >= n:
            fail("count", f"expected fewer than {n} {cls}, found {len(by_class[cls])}")
    return verdict


def evaluate(detections: list[Detection], meta: dict) -> tuple[bool, str]:
    """GenEval's verdict on one image: (correct, reason). ``detections`` most confident first."""
    verdict = check(detections, meta)
    return verdict.correct, "; ".join(verdict.reasons)


def judge(image: np.ndarray, meta: dict, world: World = World()) -> tuple[bool, str]:
    """Detect, then apply GenEval's rules; the reason also names any rejected blobs."""
    detections, notes = detect(image, world)
    correct, reason = evaluate(detections, meta)
    if not correct and notes:
        reason = "; ".join([reason] + notes)
    return correct, reason


def ground_truth(scene: Scene, world: World = World()) -> list[Detection]:
    """What a perfect detector reports for a scene."""
    return [Detection(o.shape, o.color, world.box(o), 1.0) for o in scene.objects]


def truth(scene: Scene, meta: dict, world: World = World()) -> tuple[bool, str]:
    """Whether a prompt is true of a scene, by GenEval's rules on the scene's own objects."""
    return evaluate(ground_truth(scene, world), meta)


def captions_of(scene: Scene, world: World = World()) -> list[dict]:
    """Every prompt of the six tags that is true of a scene."""
    return [m for tag in TAGS for m in all_prompts(tag) if truth(scene, m, world)[0]]


# --- prompt files ------------------------------------------------------------------------------
def validate_metadata(meta, where: str) -> dict:
    """Check one prompt against GenEval's schema and the Shapes world's vocabulary."""
    def fail(msg):
        raise CotlabError(f"{where}: {msg}")

    if not isinstance(meta, dict):
        fail("expected a JSON object with 'tag', 'include' and 'prompt'")
    for key in ("tag", "include", "prompt"):
        if key not in meta:
            fail(f"missing '{key}' (GenEval's schema: tag, include, exclude, prompt)")
    if not isinstance(meta["prompt"], str) or not meta["prompt"].strip():
        fail("'prompt' must be the prompt's text")
    if meta["tag"] not in TAGS:
        fail(f"unknown tag {meta['tag']!r}: choose one of {', '.join(TAGS)}")
    if not isinstance(meta["include"], list) or not meta["include"]:
        fail("'include' must be a non-empty list of clauses")
    if not isinstance(meta.get("exclude", []), list):
        fail("'exclude' must be a list of clauses")
    most = World().grid ** 2
    for i, req in enumerate(meta["include"] + meta.get("exclude", [])):
        if not isinstance(req, dict) or "class" not in req or "count" not in req:
            fail(f"clause {i} needs 'class' and 'count'")
        if not isinstance(req["class"], str) or req["class"] not in SHAPES:
            fail(f"unknown shape {req['class']!r}: choose one of {', '.join(SHAPES)}")
        if isinstance(req["count"], bool) or not isinstance(req["count"], int) or not 1 <= req["count"] <= most:
            fail(f"clause {i}: count must be a whole number 1 … {most} (a scene holds at most {most} "
                 f"objects), not {req['count']!r}")
        if "color" in req and (not isinstance(req["color"], str) or req["color"] not in COLORS):
            fail(f"unknown colour {req['color']!r}: choose one of {', '.join(COLORS)}")
        if "position" in req:
            pos = req["position"]
            if (not isinstance(pos, list) or len(pos) != 2 or pos[0] not in RELATIONS
                    or not isinstance(pos[1], int) or not 0 <= pos[1] < i):
                fail(f"clause {i}: position must be [relation, index of an earlier clause] "
                     f"with relation one of {', '.join(RELATIONS)}")
    return meta


def load_metadata(path: str | Path) -> list[dict]:
    """Read a GenEval ``evaluation_metadata.jsonl``; a bad line raises an error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise CotlabError(f"no prompt file at {path}: pass a GenEval-style evaluation_metadata.jsonl")
    prompts = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            meta = json.loads(line)
        except json.JSONDecodeError as e:
            raise CotlabError(f"{path}:{k}: not valid JSON ({e.msg}); each line must be one "
                              f"JSON object in GenEval's schema") from None
        prompts.append(validate_metadata(meta, f"{path}:{k}"))
    if not prompts:
        raise CotlabError(f"{path} holds no prompts")
    return prompts


BENCHMARK = DATA_DIR / "geneval_shapes"


def benchmark_prompts(heldout: bool = False) -> list[dict]:
    """The shipped benchmark prompts (``heldout=True``: the held-out binding subset)."""
    name = "heldout_metadata.jsonl" if heldout else "evaluation_metadata.jsonl"
    return load_metadata(BENCHMARK / name)


def stratified_prompts(every: int) -> list[dict]:
    """Every ``every``-th benchmark prompt of each tag, tag after tag (every tag keeps its share)."""
    prompts = benchmark_prompts()
    return [m for tag in TAGS for m in [m for m in prompts if m["tag"] == tag][::every]]


# --- GenEval's folder layout -------------------------------------------------------------------
def write_prompt_folder(outdir: str | Path, index: int, meta: dict, images: list[np.ndarray]) -> Path:
    """Write ``OUTDIR/00000/metadata.jsonl`` and ``samples/0000.png …`` as GenEval lays them out."""
    from PIL import Image

    folder = Path(outdir) / f"{index:05d}"
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "metadata.jsonl", json.dumps(meta) + "\n")
    for j, img in enumerate(images):
        tmp = folder / "samples" / f".{j:04d}.png.tmp"
        Image.fromarray(img).save(tmp, format="PNG")
        tmp.replace(folder / "samples" / f"{j:04d}.png")
    return folder


def read_image(path: Path, world: World) -> np.ndarray:
    """A sample's pixels (H, W, 3) uint8; an unreadable, non-RGB or wrongly sized image is refused in
    one line naming the fix."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode, size, pixels = im.mode, im.size, np.asarray(im).copy()
    except (OSError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise CotlabError(f"{path} is not a readable image ({' '.join(str(e).split())}): generate it again") from None
    if mode != "RGB":
        raise CotlabError(f"{path} is a {mode}-mode image: save samples as RGB PNGs (image.convert('RGB'))")
    if size != (world.image_size, world.image_size):
        n = world.image_size
        raise CotlabError(f"{path} is {size[0]}x{size[1]} but the world draws {n}x{n}: save "
                          f"samples at {n}x{n} (e.g. image.resize(({n}, {n})))")
    return pixels


def judge_folder(outdir: str | Path, world: World = World()) -> list[dict]:
    """Judge every image of a folder in GenEval's layout: one row per image (filename, tag, prompt,
    correct, reason, metadata), as GenEval's ``results.jsonl`` holds them."""
    outdir = Path(outdir)
    folders = sorted(p for p in outdir.iterdir() if p.is_dir() and p.name.isdigit()) \
        if outdir.is_dir() else []
    if not folders:
        raise CotlabError(f"{outdir} is not in GenEval's layout: expected {outdir}/00000/"
                          f"metadata.jsonl and {outdir}/00000/samples/0000.png (geneval."
                          f"write_prompt_folder writes it)")
    rows = []
    for folder in folders:
        meta_file = folder / "metadata.jsonl"
        if not meta_file.is_file():
            raise CotlabError(f"{folder} has no metadata.jsonl: every prompt folder needs one")
        meta = load_metadata(meta_file)[0]
        samples = sorted((folder / "samples").glob("*.png"))
        if not samples:
            raise CotlabError(f"{folder}/samples holds no PNG images")
        if rows and len(samples) != per_prompt:
            raise CotlabError(f"{folder}/samples holds {len(samples)} image{'s' * (len(samples) != 1)} but "
                              f"{folders[0].name} holds {per_prompt}: "
                              "an interrupted generation? run the same cotlab generate command again to finish it")
        per_prompt = len(samples)
        for png in samples:
            correct, reason = judge(read_image(png, world), meta, world)
            rows.append({"filename": str(png), "tag": meta["tag"], "prompt": meta["prompt"],
                         "correct": correct, "reason": reason, "metadata": json.dumps(meta)})
    return rows


def score_folder(outdir: str | Path, json_path: str | Path | None = None,
                 world: World = World(), quiet: bool = False) -> dict:
    """Score a folder in GenEval's layout: writes ``results.jsonl``, prints the per-tag table and
    returns the summary ``{"tags": {tag: score}, "overall": ..., "interval": ..., "images": n, ...}``."""
    if json_path:
        file_to_write(json_path)  # refused before anything is written
    rows = judge_folder(outdir, world)
    atomic_write_text(Path(outdir) / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    summary = summarize(rows)
    if not quiet:
        print(format_summary(summary))
    if json_path:
        atomic_write_json(Path(json_path), summary)
    return summary


def compare_folders(outdir_a: str | Path, outdir_b: str | Path, world: World = World()) -> dict:
    """A − B for two folders of the same prompts and samples (e.g. two strategies at the same seeds):
    each one's summary and the paired difference per task and overall (``paired_difference``)."""
    rows_a, rows_b = judge_folder(outdir_a, world), judge_folder(outdir_b, world)
    prompts = [{_sample_key(r): r["prompt"] for r in rows} for rows in (rows_a, rows_b)]
    if prompts[0] != prompts[1]:
        raise CotlabError(f"{outdir_a} and {outdir_b} do not hold the same prompts and samples: a paired "
                          "comparison needs both generated from one prompt file with the same --n-samples")
    return {"a": summarize(rows_a), "b": summarize(rows_b), "difference": paired_difference(rows_a, rows_b)}


def format_comparison(comparison: dict, names: tuple[str, str] = ("A", "B")) -> str:
    a, b, d = comparison["a"], comparison["b"], comparison["difference"]
    lines = [f"| task | {names[0]} | {names[1]} | {names[0]} − {names[1]} (paired) |", "|---|---|---|---|"]
    for key in [*a["tags"], "overall"]:
        va, vb = (s["overall"] if key == "overall" else s["tags"][key] for s in (a, b))
        lines.append(f"| {key} | {with_interval(va, a['interval'][key])} | {with_interval(vb, b['interval'][key])} | "
                     f"{describe_difference(d[key]['difference'], d[key]['interval'])} |")
    lines.append("\n95 % intervals: bootstrap over prompts, samples resampled within; the difference resamples "
                 "both folders alike (paired).")
    return "\n".join(lines)


def summarize(rows: list[dict]) -> dict:
    """Per-tag accuracy and overall = the unweighted mean over the tags present (six in GenEval),
    each with its 95 % ``interval`` (``intervals``); also the share of prompts with at least one
    correct image, as GenEval prints it."""
    by_prompt: dict[str, list[bool]] = {}
    for row in rows:
        by_prompt.setdefault(str(Path(row["filename"]).parent.parent), []).append(row["correct"])
    return {**summarize_scores(rows), "interval": intervals(rows) if rows else {},
            "images": len(rows), "prompts": len(by_prompt),
            "any_correct": float(np.mean([any(v) for v in by_prompt.values()])) if rows else 0.0}


def format_summary(summary: dict) -> str:
    ci = summary.get("interval", {})
    lines = ["| task | score [95 % interval] |", "|---|---|"]
    lines += [f"| {tag} | {with_interval(s, ci.get(tag))} |" for tag, s in summary["tags"].items()]
    lines.append(f"| **overall** | **{with_interval(summary['overall'], ci.get('overall'))}** |")
    lines.append(f"\n{summary['images']} images of {summary['prompts']} prompts; "
                 f"prompts with any image correct: {summary['any_correct']:.3f}. Intervals: bootstrap "
                 f"over prompts, samples resampled within.")
    return "\n".join(lines)


# --- uncertainty -------------------------------------------------------------------------------
# GenEval's scores carry 95 % percentile-bootstrap intervals (``cotlab.stats``) whose resampling
# follows the design of the measurement: within each task, prompts are drawn with replacement and,
# within each drawn prompt, its samples; overall is then the mean of the resampled task scores. (This
# two-stage resampling counts the within-prompt spread twice, so the interval errs on the wide side.)
# Two strategies judged on the same prompts and seeds are compared *paired* — the same resample for
# both — which removes the prompts' shared difficulty. A task measured on a single prompt gets no
# interval (nan), and neither does overall then; with a handful of prompts the percentile interval is
# too narrow, so read a smoke-sized run's intervals as a lower bound on the uncertainty.
RESAMPLES = 2000


def _sample_key(row: dict) -> tuple[str, str]:
    """(prompt, sample) of a judged row: ``.../00012/samples/0003.png`` -> ("00012", "0003.png")."""
    path = Path(row["filename"])
    return path.parent.parent.name, path.name


def _resampled_tasks(row_sets: list[list[dict]], resamples: int, seed: int) -> dict[str, np.ndarray]:
    """{tag: (len(row_sets), B) task scores on B resamples of prompts, and of samples within each
    drawn prompt}, the same resample for every row set (each must hold the same prompts and samples)."""
    rng = np.random.default_rng(seed)
    tables = [{_sample_key(r): (r["tag"], float(r["correct"])) for r in rows} for rows in row_sets]
    for k, table in enumerate(tables[1:], 1):
        if table.keys() != tables[0].keys():
            raise ValueError(f"a paired comparison needs the same prompts and samples: set {k} differs from set 0")
    out = {}
    for tag in TAGS:
        prompts: dict[str, list[str]] = {}
        for (prompt, sample), (t, _) in tables[0].items():
            if t == tag:
                prompts.setdefault(prompt, []).append(sample)
        if not prompts:
            continue
        keys = sorted(prompts)
        n = np.array([len(prompts[p]) for p in keys])  # (P,) samples per prompt
        P, S = len(keys), int(n.max())
        if P < 2:  # one prompt tells nothing of how prompts vary: no interval (nan), not a zero-width one
            out[tag] = np.full((len(tables), resamples), np.nan)
            continue
        grids = np.zeros((len(tables), P, S))  # correct, padded with zeros past n
        for k, table in enumerate(tables):
            for i, p in enumerate(keys):
                grids[k, i, :n[i]] = [table[(p, s)][1] for s in sorted(prompts[p])]
        drawn = rng.integers(P, size=(resamples, P))  # (B, P) prompts drawn
        n_drawn = n[drawn]  # (B, P)
        within = (rng.random((resamples, P, S)) * n_drawn[..., None]).astype(int)  # (B, P, S) samples drawn
        used = np.arange(S) < n_drawn[..., None]  # (B, P, S): a prompt of n samples draws n
        out[tag] = (grids[:, drawn[..., None], within] * used).sum((2, 3)) / used.sum((1, 2))  # (sets, B)
    return out


def intervals(rows: list[dict], resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict:
    """95 % intervals of each task's score and of overall (module section above):
    ``{tag: [lo, hi], ..., "overall": [lo, hi]}``."""
    tasks = _resampled_tasks([rows], resamples, seed)
    out = {tag: quantile_interval(scores[0], level) for tag, scores in tasks.items()}
    out["overall"] = quantile_interval(np.mean([scores[0] for scores in tasks.values()], 0), level)
    return out


def paired_difference(rows_a: list[dict], rows_b: list[dict], resamples: int = RESAMPLES, seed: int = 0,
                      level: float = LEVEL) -> dict:
    """A − B for two strategies judged on the same prompts and samples, with the paired interval:
    ``{tag: {"difference": d, "interval": [lo, hi]}, ..., "overall": {...}}``."""
    a, b = summarize_scores(rows_a), summarize_scores(rows_b)
    tasks = _resampled_tasks([rows_a, rows_b], resamples, seed)
    out = {tag: {"difference": a["tags"][tag] - b["tags"][tag],
                 "interval": quantile_interval(scores[0] - scores[1], level)} for tag, scores in tasks.items()}
    overall = np.mean([scores[0] - scores[1] for scores in tasks.values()], 0)
    out["overall"] = {"difference": a["overall"] - b["overall"], "interval": quantile_interval(overall, level)}
    return out


def contrast(row_sets: list[list[dict]], weights: tuple[float, ...], resamples: int = RESAMPLES, seed: int = 0,
             level: float = LEVEL) -> dict:
    """Σ_k w_k·overall_k over strategies judged on the same prompts and samples, with its paired interval
    (the same resample for every set): ``{"value": v, "interval": [lo, hi]}``. Weights (1, −1) are
    ``paired_difference``'s overall; (1, −1, −1, 1) a difference of two differences."""
    value = sum(w * summarize_scores(rows)["overall"] for w, rows in zip(weights, row_sets, strict=True))
    tasks = _resampled_tasks(row_sets, resamples, seed)
    overall = np.mean([np.tensordot(weights, scores, axes=1) for scores in tasks.values()], 0)  # (B,)
    return {"value": value, "interval": quantile_interval(overall, level)}


def summarize_scores(rows: list[dict]) -> dict:
    """Per-tag accuracy and overall (the unweighted mean of the tags present), without intervals."""
    tags = {tag: float(np.mean([r["correct"] for r in rows if r["tag"] == tag]))
            for tag in TAGS if any(r["tag"] == tag for r in rows)}
    return {"tags": tags, "overall": float(np.mean(list(tags.values()))) if tags else 0.0}
