"""Generate images for GenEval prompts with a trained generator, in memory or in GenEval's layout.

``cotlab generate MODEL --metadata FILE --outdir DIR`` writes ``DIR/00000/metadata.jsonl`` and
``DIR/00000/samples/0000.png …`` per prompt (and with ``--save-process`` the intermediate image of
every decoding step, ``DIR/00000/process/0000/step_00.png …``), which ``cotlab geneval score DIR``
scores. The samples of prompt i depend only on (seed, i), so an interrupted run resumes where it
stopped and gives the same images as an uninterrupted one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import lightning as L
import torch
from tqdm.auto import tqdm

from cotlab import geneval
from cotlab.errors import CotlabError
from cotlab.io import atomic_write_json
from cotlab.tokenizers.metrics import to_uint8


def decode(model, captions: list[str], seed: int, keep_steps: bool = False, steps: int = 8, cfg: float = 3.0):
    """One image per caption with the decoding that fits the model: MaskGIT decoding in ``steps``
    steps for a masked model, token by token for a raster one (``steps`` unused: it takes N)."""
    from cotlab.masked_ar.decoding import maskgit_decode, raster_decode

    if model.config.order == "masked":
        return maskgit_decode(model, captions, steps=steps, cfg=cfg, seed=seed, keep_steps=keep_steps)
    return raster_decode(model, captions, cfg=cfg, seed=seed)


def prompt_seed(seed: int, index: int) -> int:
    """The seed of prompt ``index``'s samples: the same whatever else is generated in the run."""
    return seed * 1_000_003 + index


def samples(model, metas: list[dict], n_samples: int = 4, seed: int = 0, keep_steps: bool = False,
            skip=lambda index: False, **options) -> Iterator[tuple[int, dict, object]]:
    """For each prompt (unless ``skip(index)``), ``(index, meta, DecodeResult of its n_samples images)``."""
    for index, meta in enumerate(metas):
        if not skip(index):
            yield index, meta, decode(model, [meta["prompt"]] * n_samples, prompt_seed(seed, index),
                                      keep_steps, **options)


def evaluate_generator(model, metas: list[dict], n_samples: int = 4, seed: int = 0, progress: bool = True,
                       **options) -> dict:
    """GenEval's summary (per tag, overall) of ``n_samples`` images per prompt, judged in memory; also
    ``forward_passes`` per image and the ``rows`` judged (filename, prompt index, sample, tag, prompt,
    correct, reason)."""
    rows, passes = [], 0
    for index, meta, result in tqdm(samples(model, metas, n_samples, seed, **options), total=len(metas),
                                    desc="generate + judge", disable=not progress, mininterval=2):
        passes = result.forward_passes
        for j, image in enumerate(to_uint8(result.images)):
            correct, reason = geneval.judge(image, meta)
            rows.append({"filename": f"{index:05d}/samples/{j:04d}.png",  # as score_folder names them
                         "index": index, "sample": j, "tag": meta["tag"], "prompt": meta["prompt"],
                         "correct": correct, "reason": reason})
    return {**geneval.summarize(rows), "forward_passes": passes, "rows": rows}


def _complete(folder: Path, n_samples: int) -> bool:
    return all((folder / "samples" / f"{j:04d}.png").is_file() for j in range(n_samples))


def generate_folder(model, metas: list[dict], outdir: str | Path, n_samples: int = 4, seed: int = 0,
                    save_process: bool = False, verifier: str | None = None, candidates: int = 1,
                    **options) -> Path:
    """Write GenEval's layout for ``metas`` into ``outdir``; prompt folders already complete are kept
    (a resumed run), so nothing written is lost. ``run.json`` records the settings, and a resumed run
    must use the same ones. With a ``verifier`` (``cotlab.verification.search.VERIFIERS``) each image
    is that search's choice among ``candidates`` paths, and ``00000/search.json`` records its cost."""
    from PIL import Image

    outdir = Path(outdir)
    settings = {"n_samples": n_samples, "seed": seed, "save_process": save_process, **options}
    if verifier is not None:
        if save_process:
            raise CotlabError("--save-process is for plain sampling: drop it, or drop --verifier")
        settings.update(verifier=verifier, candidates=candidates)
        search_one = _searcher(model, verifier, candidates, seed, **options)
    outdir.mkdir(parents=True, exist_ok=True)
    run_file = outdir / "run.json"
    if run_file.is_file():
        before = json.loads(run_file.read_text())
        if {k: before.get(k) for k in settings} != settings:
            raise CotlabError(f"{outdir} holds a run with other settings ({run_file}): use a new --outdir, "
                              "or the same settings to resume it")
    else:
        atomic_write_json(run_file, settings)
    done = {i for i in range(len(metas)) if _complete(outdir / f"{i:05d}", n_samples)}
    if done:
        print(f"resuming: {len(done)} of {len(metas)} prompts already in {outdir}")
    todo = [i for i in range(len(metas)) if i not in done]
    if verifier is not None:
        for index in tqdm(todo, desc=f"generate with {verifier}", mininterval=2):
            found = [search_one(metas[index], index, j) for j in range(n_samples)]
            atomic_write_json(outdir / f"{index:05d}" / "search.json",
                              [{"passes": f.passes, "verifier_calls": f.calls, "chosen": f.chosen} for f in found])
            geneval.write_prompt_folder(outdir, index, metas[index], list(to_uint8(torch.stack([f.image for f in found]))))
        return outdir
    work = samples(model, metas, n_samples, seed, keep_steps=save_process, skip=done.__contains__, **options)
    for index, meta, result in tqdm(work, total=len(todo), desc="generate", mininterval=2):
        folder = outdir / f"{index:05d}"
        if save_process:
            for t, step in enumerate(result.steps):
                for j, image in enumerate(to_uint8(step["image"])):
                    path = folder / "process" / f"{j:04d}" / f"step_{t:02d}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(image).save(path)
        geneval.write_prompt_folder(outdir, index, meta, list(to_uint8(result.images)))  # samples last
    return outdir


def _searcher(model, verifier: str, candidates: int, seed: int, **options):
    """(meta, prompt index, sample) -> the verifier's ``Search`` among ``candidates`` paths."""
    from cotlab.harness import load_checkpoint
    from cotlab.masked_ar.decoding import path_seed
    from cotlab.verification.search import VERIFIERS, run

    if verifier not in VERIFIERS:
        raise CotlabError(f"unknown verifier '{verifier}': choose one of {', '.join(VERIFIERS)}")
    if model.config.order != "masked":
        raise CotlabError("verifiers search over MaskGIT decoding paths: use a masked generator, e.g. maskgit")
    if candidates < 1:
        raise CotlabError(f"--candidates must be at least 1, got {candidates}")
    checkpoint = VERIFIERS[verifier][0]
    try:
        judge = load_checkpoint(checkpoint) if checkpoint else None
    except FileNotFoundError as e:
        raise CotlabError(f"{e}; train it with: cotlab train {checkpoint} --profile cpu --ship") from None

    def one(meta: dict, index: int, sample: int):
        seeds = [path_seed(seed, index, sample, c) for c in range(candidates)]
        return run(verifier, model, meta, seeds, judge, **options)
    return one


def load_generator(name_or_path: str):
    """A generator checkpoint by name or folder, with a one-line error naming the fix."""
    from cotlab.harness import load_checkpoint
    from cotlab.masked_ar.model import MaskedAR

    try:
        model = load_checkpoint(name_or_path)
    except FileNotFoundError as e:
        raise CotlabError(str(e)) from None
    if not isinstance(model, MaskedAR):
        raise CotlabError(f"{name_or_path} is a {type(model).__name__}, not a generator: "
                          "choose e.g. maskgit")
    return model


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
            self.images[step] = decode(model, self.captions, self.seed, **self.options).images
            model.train()

    def on_train_batch_start(self, trainer, model, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._sample(model)

    def on_train_end(self, trainer, model) -> None:
        self._sample(model)


def failures(model, metas: list[dict], rows: list[dict], limit: int = 8, n_samples: int = 4, seed: int = 0,
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
        result = decode(model, [metas[index]["prompt"]] * n_samples, prompt_seed(seed, index), **options)
        out.append((result.images[row["sample"]], row))
    return out
