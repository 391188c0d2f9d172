"""The Shapes world: procedurally rendered scenes of coloured shapes, with GenEval-style prompts.

No data set can be downloaded here, and a CPU must be enough, so the workbook brings its own world.
A scene is a few coloured shapes on a plain background, each sitting in one cell of a coarse grid
(4×4 cells of 8×8 px at 32×32) with a little jitter in place, size and tone. An f8 tokenizer can then
give one token per cell (*what* is there), and a continuous residual can carry the jitter (*exactly
how* it is drawn) — the split the hybrid tokenizer of notebook 01 teaches.

Prompts follow GenEval's six task tags and its metadata schema (arXiv 2310.11513)::

    {"tag": "position", "prompt": "a photo of a circle left of a square",
     "include": [{"class": "square", "count": 1},
                 {"class": "circle", "count": 1, "position": ["left of", 0]}]}

``scene_for_prompt`` draws a scene of which the prompt is true, so the Shapes data module yields
(image, caption, metadata) triples that are correct by construction, from an infinite seeded stream.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cotlab.metrics import to_tensor

SHAPES = ("circle", "square", "triangle", "cross")
PALETTE = {  # name -> RGB; every pair differs by >= 120 in some channel, so ±25 shifts stay readable
    "red": (220, 40, 40),
    "green": (40, 180, 70),
    "blue": (40, 80, 230),
    "yellow": (235, 205, 40),
    "purple": (160, 60, 210),
    "white": (235, 235, 235),
}
COLORS = tuple(PALETTE)
BACKGROUND = (24, 24, 28)
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {2: "two", 3: "three", 4: "four"}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
# GenEval's prompts per tag (553 in all): the benchmark keeps these proportions.
GENEVAL_TAG_COUNTS = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94,
                      "position": 100, "color_attr": 100}
# Colour-shape bindings no training caption ever names; the held-out prompts test them.
HELDOUT_BINDINGS = frozenset({("yellow", "triangle"), ("blue", "circle"), ("purple", "square"),
                              ("green", "cross")})


@dataclass(frozen=True)
class Obj:
    """One shape in one grid cell. Jitter is in cell units: ``dx, dy`` move the centre,
    ``size`` is the side of its bounding box, ``tone`` scales its colour's brightness."""
    shape: str
    color: str
    row: int
    col: int
    dx: float = 0.0
    dy: float = 0.0
    size: float = 0.7
    tone: float = 1.0


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    grid: int = 4

    def to_dict(self) -> dict:
        return {"grid": self.grid, "objects": [vars(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        return cls(tuple(Obj(**o) for o in d["objects"]), d.get("grid", 4))


def inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v), in units of the half-size with y pointing down, lie in ``shape``.
    All shapes fill the box [-1, 1]²; areas are 4 (square), π (circle), 2.36 (cross), 2 (triangle).
    (A diamond was tried and dropped: blurred by 1 px it is a circle to any detector.)"""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape == "triangle":  # apex up, base down
        return (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2.0)
    if shape == "cross":  # a plus sign with arms 0.72 wide
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0) & ((np.abs(u) <= 0.36) | (np.abs(v) <= 0.36))
    raise ValueError(f"unknown shape {shape!r}: choose one of {', '.join(SHAPES)}")


@dataclass(frozen=True)
class World:
    """Every knob of the world's geometry and of its scene sampler, with the calibrated defaults.

    ``jitter`` (cell units) bounds the centre offset, ``sizes`` the box side and ``tones`` the
    brightness factor; ``max_distractors`` extra objects, of classes the prompt does not name, are
    added to a scene so captions describe part of a scene, not all of it.
    """
    image_size: int = 32
    grid: int = 4
    jitter: float = 0.09
    sizes: tuple[float, float] = (0.7, 0.85)
    tones: tuple[float, float] = (0.85, 1.0)
    max_distractors: int = 2
    antialias: int = 4  # sub-samples per pixel side; 1 draws hard edges

    def __post_init__(self):
        if self.image_size % self.grid or self.image_size // self.grid < 4:
            raise ValueError(f"image_size {self.image_size} must be a multiple of grid {self.grid} "
                             f"with cells of at least 4 px (e.g. image_size={8 * self.grid})")

    @property
    def cell(self) -> int:
        return self.image_size // self.grid

    # --- drawing ---------------------------------------------------------------------------
    def box(self, o: Obj) -> tuple[float, float, float, float]:
        """Bounding box (x0, y0, x1, y1) of an object in pixels."""
        c = self.cell
        cx, cy, r = (o.col + 0.5 + o.dx) * c, (o.row + 0.5 + o.dy) * c, o.size * c / 2
        return (cx - r, cy - r, cx + r, cy + r)

    def coverage(self, o: Obj) -> tuple[np.ndarray, slice, slice]:
        """Fraction of each pixel near ``o`` that the shape covers (supersampled), and where."""
        x0, y0, x1, y1 = self.box(o)
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
        ys = slice(max(int(math.floor(y0)), 0), min(int(math.ceil(y1)), self.image_size))
        xs = slice(max(int(math.floor(x0)), 0), min(int(math.ceil(x1)), self.image_size))
        s = self.antialias
        sub = (np.arange(s) + 0.5) / s  # sub-sample offsets inside a pixel
        py = (np.arange(ys.start, ys.stop)[:, None] + sub[None, :]).reshape(-1)
        px = (np.arange(xs.start, xs.stop)[:, None] + sub[None, :]).reshape(-1)
        hit = inside(o.shape, (px[None, :] - cx) / r, (py[:, None] - cy) / r)  # (h*s, w*s)
        h, w = ys.stop - ys.start, xs.stop - xs.start
        return hit.reshape(h, s, w, s).mean(axis=(1, 3)), ys, xs

    def render(self, scene: Scene) -> np.ndarray:
        """Draw a scene: (H, W, 3) uint8, the background blended with each shape by its coverage."""
        if scene.grid != self.grid:
            raise ValueError(f"scene has a {scene.grid}x{scene.grid} grid but this world draws "
                             f"{self.grid}x{self.grid}: use World(grid={scene.grid})")
        img = np.empty((self.image_size, self.image_size, 3), np.float32)
        img[:] = BACKGROUND
        for o in scene.objects:
            alpha, ys, xs = self.coverage(o)
            rgb = np.clip(np.array(PALETTE[o.color], np.float32) * o.tone, 0, 255)
            patch = img[ys, xs]
            img[ys, xs] = patch * (1 - alpha[..., None]) + rgb * alpha[..., None]
        return np.round(img).astype(np.uint8)

    # --- sampling --------------------------------------------------------------------------
    def random_object(self, rng: np.random.Generator, shape: str, color: str,
                      cell: tuple[int, int]) -> Obj:
        j, (lo, hi), (tlo, thi) = self.jitter, self.sizes, self.tones
        return Obj(shape, color, int(cell[0]), int(cell[1]), dx=float(rng.uniform(-j, j)),
                   dy=float(rng.uniform(-j, j)), size=float(rng.uniform(lo, hi)),
                   tone=float(rng.uniform(tlo, thi)))

    def scene_for_prompt(self, meta: dict, rng: np.random.Generator) -> Scene:
        """A random scene of which the prompt ``meta`` (GenEval schema) is true.

        Named objects take free cells (for ``position`` a pair of cells whose offset is mostly
        along the relation's axis, so GenEval's rule holds whatever the jitter); distractors use
        only classes the prompt does not name, so counts and colours stay unambiguous.
        """
        g = self.grid
        free = [(r, c) for r in range(g) for c in range(g)]
        rng.shuffle(free)
        objects: list[Obj] = []

        def color_of(req):
            return req.get("color") or COLORS[rng.integers(len(COLORS))]

        reqs = meta["include"]
        if meta["tag"] == "position":
            target, mover = reqs[0], reqs[1]
            a, b = _cells_for_relation(mover["position"][0], g, rng)
            objects.append(self.random_object(rng, mover["class"], color_of(mover), a))
            objects.append(self.random_object(rng, target["class"], color_of(target), b))
            free = [c for c in free if c not in (a, b)]
        else:
            for req in reqs:
                for _ in range(req["count"]):
                    objects.append(self.random_object(rng, req["class"], color_of(req), free.pop()))
        named = {req["class"] for req in reqs}
        others = [s for s in SHAPES if s not in named]
        room = min(self.max_distractors, len(free))
        for _ in range(int(rng.integers(room + 1)) if others else 0):
            shape = others[rng.integers(len(others))]
            objects.append(self.random_object(rng, shape, COLORS[rng.integers(len(COLORS))],
                                              free.pop()))
        order = rng.permutation(len(objects))
        return Scene(tuple(objects[i] for i in order), g)

    def sample(self, rng: np.random.Generator, tag: str | None = None) -> tuple[Scene, dict]:
        """A training example: a prompt (never naming a held-out binding) and a scene it is true of."""
        meta = sample_prompt(rng, tag)
        return self.scene_for_prompt(meta, rng), meta


def _cells_for_relation(rel: str, g: int, rng: np.random.Generator):
    """Cells (a, b) with a `rel` b: along the relation's axis by d >= 1 cells, across it by < d."""
    while True:
        a, b = tuple(rng.integers(g, size=2)), tuple(rng.integers(g, size=2))
        along = {"left of": b[1] - a[1], "right of": a[1] - b[1],
                 "above": b[0] - a[0], "below": a[0] - b[0]}[rel]
        across = abs(a[0] - b[0]) if rel in ("left of", "right of") else abs(a[1] - b[1])
        if along >= 1 and across < along:
            return (int(a[0]), int(a[1])), (int(b[0]), int(b[1]))


# --- prompts -----------------------------------------------------------------------------------
def make_prompt(tag: str, include: list[dict]) -> dict:
    """GenEval metadata for a tag and its include clauses, with the prompt text and the exclude
    clause (counting demands the exact number: fewer than n + 1)."""
    def noun(req):
        return f"{req['color']} {req['class']}" if "color" in req else req["class"]

    if tag == "single_object" or tag == "colors":
        text = f"a photo of a {noun(include[0])}"
    elif tag in ("two_object", "color_attr"):
        text = f"a photo of a {noun(include[0])} and a {noun(include[1])}"
    elif tag == "counting":
        text = f"a photo of {NUMBERS[include[0]['count']]} {PLURALS[include[0]['class']]}"
    elif tag == "position":
        text = f"a photo of a {include[1]['class']} {include[1]['position'][0]} a {include[0]['class']}"
    else:
        raise ValueError(f"unknown tag {tag!r}: choose one of {', '.join(TAGS)}")
    meta = {"tag": tag, "include": include}
    if tag == "counting":
        meta["exclude"] = [{"class": include[0]["class"], "count": include[0]["count"] + 1}]
    meta["prompt"] = text
    return meta


def all_prompts(tag: str) -> list[dict]:
    """Every distinct prompt of a tag, in a fixed order."""
    if tag == "single_object":
        return [make_prompt(tag, [{"class": s, "count": 1}]) for s in SHAPES]
    if tag == "two_object":
        return [make_prompt(tag, [{"class": a, "count": 1}, {"class": b, "count": 1}])
                for a, b in itertools.permutations(SHAPES, 2)]
    if tag == "counting":
        return [make_prompt(tag, [{"class": s, "count": n}]) for s in SHAPES for n in NUMBERS]
    if tag == "colors":
        return [make_prompt(tag, [{"class": s, "count": 1, "color": c}])
                for s in SHAPES for c in COLORS]
    if tag == "position":
        return [make_prompt(tag, [{"class": b, "count": 1},
                                  {"class": a, "count": 1, "position": [rel, 0]}])
                for a, b in itertools.permutations(SHAPES, 2) for rel in RELATIONS]
    if tag == "color_attr":
        return [make_prompt(tag, [{"class": a, "count": 1, "color": ca},
                                  {"class": b, "count": 1, "color": cb}])
                for a, b in itertools.permutations(SHAPES, 2)
                for ca, cb in itertools.permutations(COLORS, 2)]
    raise ValueError(f"unknown tag {tag!r}: choose one of {', '.join(TAGS)}")


def is_heldout(meta: dict) -> bool:
    """Whether a prompt names a held-out colour-shape binding."""
    return any((r.get("color"), r["class"]) in HELDOUT_BINDINGS for r in meta["include"])


_TRAIN_PROMPTS = {t: [m for m in all_prompts(t) if not is_heldout(m)] for t in TAGS}


def sample_prompt(rng: np.random.Generator, tag: str | None = None) -> dict:
    """A training prompt: a uniformly drawn tag, then a uniformly drawn prompt of that tag."""
    tag = tag or TAGS[rng.integers(len(TAGS))]
    if tag not in _TRAIN_PROMPTS:
        raise ValueError(f"unknown tag {tag!r}: choose one of {', '.join(TAGS)}")
    prompts = _TRAIN_PROMPTS[tag]
    return prompts[rng.integers(len(prompts))]


# --- data module -------------------------------------------------------------------------------
def captioned(batch: dict) -> dict:
    """The training view of a batch: ``image``, ``caption``, ``meta`` (Lightning moves batches
    between devices, so the ``Scene`` objects stay behind)."""
    return {k: v for k, v in batch.items() if k != "scene"}


class ShapesStream(IterableDataset):
    """An endless stream of batches, reproducible from ``seed``; ``view`` picks what a model sees
    of each ``make_batch`` (by default images with their captions and metadata).

    Each dataloader worker and each distributed rank draws from its own generator,
    ``SeedSequence([seed, rank, worker])``, so no two see the same examples.
    """

    def __init__(self, world: World, batch_size: int, seed: int, rank: int = 0,
                 limit: int | None = None, view=captioned):
        self.world, self.batch_size, self.seed, self.rank, self.limit, self.view = (
            world, batch_size, seed, rank, limit, view)

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info else 0
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.rank, worker]))
        for _ in itertools.count() if self.limit is None else range(self.limit):
            yield self.view(make_batch(self.world, rng, self.batch_size))


def make_batch(world: World, rng: np.random.Generator, n: int) -> dict:
    """``n`` examples: ``image`` (B, 3, H, W) in [0, 1], ``caption`` list, ``meta`` list, ``scene`` list."""
    scenes, metas = zip(*(world.sample(rng) for _ in range(n)))
    images = np.stack([world.render(s) for s in scenes])  # (B, H, W, 3)
    return {"image": to_tensor(images), "caption": [m["prompt"] for m in metas],
            "meta": list(metas), "scene": list(scenes)}


class ShapesDataModule(L.LightningDataModule):
    """Shapes batches for training (endless) and validation (a fixed ``val_batches`` batches);
    ``view`` as in ``ShapesStream`` (a module-level function, so workers can pickle it)."""

    def __init__(self, batch_size: int = 128, seed: int = 0, world: World = World(),
                 num_workers: int = 0, val_batches: int = 4, view=captioned):
        super().__init__()
        self.batch_size, self.seed, self.world, self.view = batch_size, seed, world, view
        self.num_workers, self.val_batches = num_workers, val_batches

    def _loader(self, seed: int, limit: int | None) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        stream = ShapesStream(self.world, self.batch_size, seed, rank, limit, self.view)
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.seed, None)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.seed + 10_000, self.val_batches)


OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def counterfactual(meta: dict, rng: np.random.Generator) -> dict:
    """A minimally changed prompt: another shape (single/two objects), count, colour, the opposite
    relation, or the two colours swapped (attribute binding). It is usually false of a scene the
    original is true of; check with ``cotlab.geneval.truth`` where it matters."""
    tag, inc = meta["tag"], [dict(r) for r in meta["include"]]
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    if tag in ("single_object", "two_object"):
        i = int(rng.integers(len(inc)))
        named = {r["class"] for r in inc}
        inc[i]["class"] = pick([s for s in SHAPES if s not in named])
    elif tag == "counting":
        inc[0]["count"] = pick([n for n in NUMBERS if n != inc[0]["count"]])
    elif tag == "colors":
        inc[0]["color"] = pick([c for c in COLORS if c != inc[0]["color"]
                                and (c, inc[0]["class"]) not in HELDOUT_BINDINGS])
    elif tag == "position":
        inc[1]["position"] = [OPPOSITE[inc[1]["position"][0]], 0]
    elif tag == "color_attr":
        inc[0]["color"], inc[1]["color"] = inc[1]["color"], inc[0]["color"]
    else:
        raise ValueError(f"unknown tag {tag!r}: choose one of {', '.join(TAGS)}")
    return make_prompt(tag, inc)
