"""Sampling: the one interface every generator offers, and what the workbook builds on it.

A generator — MaskGIT, raster AR, and the next-X, diffusion and distilled generators to come — makes
an image in T steps. ``generator.paths(captions, seeds, **options)`` starts one *path* per caption,
each drawing from its own random stream (``path_seed``), and returns a ``Paths``:

    advance(rows=None, shared=False)   one more step on some paths (default: every path not done)
    images(rows=None, final=False)     (R, 3, H, W) in [0, 1]: each path's intermediate image — what
                                       it would draw if it stopped now — or, with final, its image
    done(rows=None), position, passes  which paths have taken all T steps; steps and forward passes so far
    state(row) / restore(row, state)   a path's partial state, and a path put into one (rollouts, branches)
    redraw(row, cells)                 re-mask some grid cells and decode them again (where supported)

Every search of notebook 06 (best-of-N, step-level PRM search, PARM's pruning, PARM++'s reflection),
the reward models' data and the RL rewards work through this interface alone, so they work on every
generator. On it, here: ``sample`` (decode to the end, optionally recording each step),
``evaluate_generator`` (GenEval in memory), ``benchmark_metrics`` (a generator card's), ``failures``, ``SamplesWhileTraining`` and
``load_generator``.

Seeds: the samples of prompt i depend only on (seed, i) (``prompt_seed``), and a path's image only on
its own seed, never on which paths share its batch — so best-of-n's candidates are the first n of
best-of-N's, and a resumed run draws what an uninterrupted one would.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from tqdm.auto import tqdm

from cotlab import geneval
from cotlab.errors import CotlabError
from cotlab.harness import load_checkpoint
from cotlab.metrics import to_uint8


# --- seeds ---------------------------------------------------------------------------------------
def path_seed(*parts: int) -> int:
    """The seed of one decoding path, from e.g. (run seed, prompt, sample, candidate). Each path draws
    from its own random stream, so its image does not depend on which paths share its batch: the
    first n of best-of-N's candidates are best-of-n's, and stopping a path leaves the others as they were."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: a valid torch seed


def prompt_seed(seed: int, index: int) -> int:
    """The seed of prompt ``index``'s samples: the same whatever else is generated in the run."""
    return seed * 1_000_003 + index


def row_seeds(seed: int | Sequence[int], rows: int) -> list[int]:
    """One seed per row: ``seed`` as given if it is a list, else path_seed(seed, row)."""
    seeds = [path_seed(seed, r) for r in range(rows)] if isinstance(seed, int) else list(seed)
    if len(seeds) != rows:
        raise ValueError(f"got {len(seeds)} seeds for {rows} captions")
    return seeds


# --- the interface -----------------------------------------------------------------------------
class Paths(ABC):
    """B paths of one generator, advanced one step at a time (see the module docstring).

    ``position`` (B,) counts the steps each path has taken of its ``steps`` = T, ``passes`` (B,) the
    generator's forward passes it has cost (``cost`` per step: two with classifier-free guidance);
    ``generators`` hold each path's random stream (on the CPU: the same draws on any device).
    A generator implements ``step``, ``images``, ``state``, ``restore`` and, if it can, ``redraw``, and
    keeps ``tokens`` (B, …): what its images decode from, which ``sample`` returns beside them."""

    def __init__(self, captions: list[str], steps: int, seeds: int | Sequence[int], cost: int):
        B = len(captions)
        self.captions, self.steps, self.cost = list(captions), steps, cost
        self.generators = [torch.Generator().manual_seed(s) for s in row_seeds(seeds, B)]
        self.position = torch.zeros(B, dtype=torch.long)
        self.passes = torch.zeros(B, dtype=torch.long)

    def rows(self, rows=None) -> torch.Tensor:
        """``rows`` as a (R,) long tensor; every path if None."""
        return torch.arange(len(self.captions)) if rows is None else torch.as_tensor(rows, dtype=torch.long).reshape(-1)

    def done(self, rows=None) -> torch.Tensor:
        """(R,) bool: which of ``rows`` have taken all T steps."""
        return self.position[self.rows(rows)] >= self.steps

    def advance(self, rows=None, shared: bool = False) -> None:
        """Take one step on ``rows`` (default: every path not done). ``shared=True`` says the rows are
        in one state (branches of one path): the generator runs once and each row samples from its
        output with its own stream — one path's cost."""
        rows = (~self.done()).nonzero()[:, 0] if rows is None else self.rows(rows)
        if bool(self.done(rows).any()):
            raise ValueError("a path that has taken all its steps cannot advance")
        self.step(rows, shared)
        self.position[rows] += 1
        if shared:
            self.passes[rows[0]] += self.cost  # one run of the generator for all branches, charged once
        else:
            self.passes[rows] += self.cost

    def finish(self, rows=None) -> None:
        """Advance ``rows`` (default: all) until each has taken all its steps."""
        rows = self.rows(rows)
        while not bool(self.done(rows).all()):
            self.advance(rows[~self.done(rows)])

    def copy_state(self, source: int, rows) -> None:
        """Give ``rows`` the state of path ``source`` (each keeps its own random stream)."""
        state = self.state(source)
        for row in self.rows(rows).tolist():
            self.restore(row, state)

    def record(self) -> dict[str, Any]:
        """What ``sample(keep_steps=True)`` keeps of each step: at least ``image``, the intermediates."""
        return {"image": self.images()}

    def redraw(self, row: int, cells: torch.Tensor) -> None:
        """Re-mask the grid cells ``cells`` (cells,) bool of path ``row``'s image and let the path decode
        them again from there (PARM++'s reflection), keeping the rest."""
        raise CotlabError(f"{type(self).__name__} cannot redraw part of an image: reflection (parm++) needs a "
                          "generator that re-masks, e.g. maskgit")

    @abstractmethod
    def step(self, rows: torch.Tensor, shared: bool) -> None:
        """The generator's step on ``rows`` (``advance`` counts it)."""

    @abstractmethod
    def images(self, rows=None, final: bool = False) -> torch.Tensor:
        """(R, 3, H, W) in [0, 1]: the intermediate images of ``rows``, or with ``final`` the images
        their current state decodes to (the final images once done)."""

    @abstractmethod
    def state(self, row: int) -> Any:
        """Path ``row``'s partial state, for ``restore``."""

    @abstractmethod
    def restore(self, row: int, state: Any) -> None:
        """Put path ``row`` into ``state``; it resumes from there as if decoding had reached it."""


# --- sampling to the end -------------------------------------------------------------------------
@dataclass
class Samples:
    """What a generator made: ``tokens`` (B, …), what the images decode from (token indices, or
    latents), the ``images`` (B, 3, H, W) in [0, 1], the ``forward_passes`` per image and, when asked,
    ``steps``: one ``Paths.record()`` dict per step (``image`` (B, 3, H, W) and the generator's own)."""
    tokens: torch.Tensor
    images: torch.Tensor
    forward_passes: int
    steps: list[dict] = field(default_factory=list)


@torch.no_grad()
def sample(generator, captions: list[str], seed: int | Sequence[int] = 0, keep_steps: bool = False,
           **options) -> Samples:
    """One image per caption, decoded to the end; ``seed`` is one seed per caption, or an int that
    gives row r ``path_seed(seed, r)``. ``options`` go to ``generator.paths`` (e.g. ``steps``, ``cfg``)."""
    paths = generator.paths(captions, seed, **options)
    record = []
    while not bool(paths.done().all()):
        paths.advance()
        if keep_steps:
            record.append(paths.record())
    return Samples(paths.tokens, paths.images(final=True), int(paths.passes[0]), record)


def samples(generator, metas: list[dict], n_samples: int = 4, seed: int = 0, keep_steps: bool = False,
            skip=lambda index: False, batch_prompts: int = 8, **options) -> Iterator[tuple[int, dict, Samples]]:
    """For each prompt (unless ``skip(index)``), ``(index, meta, Samples of its n_samples images)``.
    ``batch_prompts`` prompts are decoded together — the same images as one at a time (each path
    draws from its own seed), in fewer, larger forward passes."""
    todo = [index for index in range(len(metas)) if not skip(index)]
    for start in range(0, len(todo), batch_prompts):
        chunk = todo[start:start + batch_prompts]
        captions = [metas[i]["prompt"] for i in chunk for _ in range(n_samples)]
        seeds = [s for i in chunk for s in row_seeds(prompt_seed(seed, i), n_samples)]
        result = sample(generator, captions, seeds, keep_steps, **options)
        for k, index in enumerate(chunk):
            rows = slice(k * n_samples, (k + 1) * n_samples)
            steps = [{name: value[rows] for name, value in step.items()} for step in result.steps]
            yield index, metas[index], Samples(result.tokens[rows], result.images[rows], result.forward_passes, steps)


def evaluate_generator(generator, metas: list[dict], n_samples: int = 4, seed: int = 0, progress: bool = True,
                       **options) -> dict:
    """GenEval's summary (per tag, overall) of ``n_samples`` images per prompt, judged in memory; also
    ``forward_passes`` per image and the ``rows`` judged (filename, prompt index, sample, tag, prompt,
    correct, reason)."""
    rows, passes = [], 0
    for index, meta, result in tqdm(samples(generator, metas, n_samples, seed, **options), total=len(metas),
                                    desc="generate + judge", disable=not progress, mininterval=2):
        passes = result.forward_passes
        for j, image in enumerate(to_uint8(result.images)):
            correct, reason = geneval.judge(image, meta)
            rows.append({"filename": f"{index:05d}/samples/{j:04d}.png",  # as score_folder names them
                         "index": index, "sample": j, "tag": meta["tag"], "prompt": meta["prompt"],
                         "correct": correct, "reason": reason})
    return {**geneval.summarize(rows), "forward_passes": passes, "rows": rows}


def benchmark_metrics(generator, profile: str, **options) -> dict:
    """A generator card's headline metrics: GenEval overall (with its 95 % interval) and per tag, and
    forward passes per image, on the benchmark prompts × 4 samples (smoke: every 40th prompt, one
    sample), with the generator's default decoding unless ``options`` say otherwise."""
    metas = geneval.benchmark_prompts()
    smoke = profile == "smoke"
    summary = evaluate_generator(generator, metas[::40] if smoke else metas, n_samples=1 if smoke else 4,
                                 progress=False, **options)
    return {"geneval_overall": summary["overall"],
            "geneval_overall_interval": [round(v, 4) for v in summary["interval"]["overall"]],
            "forward_passes": summary["forward_passes"],
            **{f"geneval_{tag}": score for tag, score in summary["tags"].items()}}


def failures(generator, metas: list[dict], rows: list[dict], limit: int = 8, n_samples: int = 4, seed: int = 0,
             **options) -> list[tuple[torch.Tensor, dict]]:
    """Up to ``limit`` failed images of an ``evaluate_generator`` run (its ``rows``), one tag after
    another, regenerated exactly (a prompt's samples depend only on the seed and its index):
    ``[(image (3, H, W), row), ...]``. Pass the run's ``metas``, ``n_samples``, ``seed`` and options."""
    by_tag: dict[str, list[dict]] = {}
    for row in rows:
        if not row["correct"]:
            by_tag.setdefault(row["tag"], []).append(row)
    chosen = [r for group in zip(*by_tag.values()) for r in group] if by_tag else []
    chosen += [r for group in by_tag.values() for r in group if r not in chosen]  # tags with more failures
    out = []
    for row in chosen[:limit]:
        index = row["index"]
        result = sample(generator, [metas[index]["prompt"]] * n_samples, prompt_seed(seed, index), **options)
        out.append((result.images[row["sample"]], row))
    return out


class SamplesWhileTraining(L.Callback):
    """Samples for fixed ``captions`` while a generator trains: before step 0, every ``every`` steps
    and at the end, decoded as ``cotlab generate`` decodes (same seed each time, so the pictures
    differ only by training). ``images`` maps the step to (B, 3, H, W) images in [0, 1]."""

    def __init__(self, captions: list[str], every: int, seed: int = 0, **options):
        self.captions, self.every, self.seed, self.options = list(captions), every, seed, options
        self.images: dict[int, torch.Tensor] = {}

    def _sample(self, model) -> None:
        step = model.trainer.global_step
        if step not in self.images:
            model.eval()
            self.images[step] = sample(model, self.captions, self.seed, **self.options).images
            model.train()

    def on_train_batch_start(self, trainer, model, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._sample(model)

    def on_train_end(self, trainer, model) -> None:
        self._sample(model)


def load_generator(name_or_path: str):
    """A generator checkpoint (anything that offers ``paths``) by name or folder, with a one-line error
    naming the fix."""
    try:
        model = load_checkpoint(name_or_path)
    except FileNotFoundError as e:
        raise CotlabError(str(e)) from None
    if not callable(getattr(model, "paths", None)):
        raise CotlabError(f"{name_or_path} is a {type(model).__name__}, not a generator: choose e.g. maskgit")
    return model
