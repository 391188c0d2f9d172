"""Generate images for GenEval prompts into GenEval's folder layout, plainly or through a verifier's search.

``cotlab generate MODEL --metadata FILE --outdir DIR``, for any generator (``cotlab.sampling``), writes
``DIR/00000/metadata.jsonl`` and ``DIR/00000/samples/0000.png …`` per prompt (and with
``--save-process`` the intermediate image of every decoding step, ``DIR/00000/process/0000/step_00.png
…``), which ``cotlab geneval score DIR`` scores. With ``--verifier NAME``
(``cotlab.verification.search.VERIFIERS``) each image is that search's choice among ``--candidates``
paths. The samples of prompt i depend only on (seed, i), so an interrupted run resumes where it
stopped and gives the same images as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from cotlab import geneval
from cotlab.errors import CotlabError
from cotlab.harness import load_checkpoint
from cotlab.io import atomic_output, atomic_write_json, remove_temporaries
from cotlab.metrics import to_uint8
from cotlab.sampling import path_seed, samples
from cotlab.verification.search import VERIFIERS, run


def _complete(folder: Path, n_samples: int) -> bool:
    return all((folder / "samples" / f"{j:04d}.png").is_file() for j in range(n_samples))


def check_options(model, metas: list[dict], n_samples: int, candidates: int, **options) -> None:
    """Refuse bad options before anything is written: counts below 1, a guidance weight that is not a
    finite number, and whatever the generator's own paths refuse (e.g. ``steps=0``, an unknown solver)
    — checked by starting one path, which draws nothing."""
    if n_samples < 1:
        raise CotlabError(f"--n-samples must be at least 1, got {n_samples}")
    if candidates < 1:
        raise CotlabError(f"--candidates must be at least 1, got {candidates}")
    if "cfg" in options and not math.isfinite(options["cfg"]):
        raise CotlabError(f"--cfg must be a finite number (e.g. 3), got {options['cfg']}")
    if metas:
        model.paths([metas[0]["prompt"]], 0, **options)


def generate_folder(model, metas: list[dict], outdir: str | Path, n_samples: int = 4, seed: int = 0,
                    save_process: bool = False, verifier: str | None = None, candidates: int = 1,
                    **options) -> Path:
    """Write GenEval's layout for ``metas`` into ``outdir``; prompt folders already complete are kept
    (a resumed run), so nothing written is lost. ``run.json`` records the settings, and a resumed run
    must use the same ones. With a ``verifier`` (``cotlab.verification.search.VERIFIERS``) each image
    is that search's choice among ``candidates`` paths, and ``00000/search.json`` records its cost."""
    outdir = Path(outdir)
    check_options(model, metas, n_samples, candidates if verifier is not None else 1, **options)
    settings = {"n_samples": n_samples, "seed": seed, "save_process": save_process, **options}
    if verifier is not None:
        if save_process:
            raise CotlabError("--save-process is for plain sampling: drop it, or drop --verifier")
        settings.update(verifier=verifier, candidates=candidates)
        search_one = _searcher(model, verifier, candidates, seed, **options)
    if outdir.exists() and not outdir.is_dir():
        raise CotlabError(f"--outdir {outdir} is a file: choose a folder (new, or a run of these prompts to resume)")
    _check_same_prompts(outdir, metas)
    outdir.mkdir(parents=True, exist_ok=True)
    run_file = outdir / "run.json"
    if run_file.is_file():
        before = json.loads(run_file.read_text())
        if {k: before.get(k) for k in settings} != settings:
            raise CotlabError(f"{outdir} holds a run with other settings ({run_file}): use a new --outdir, "
                              "or the same settings to resume it")
    else:
        atomic_write_json(run_file, settings)
    remove_temporaries(outdir)  # what a killed run was writing; the files it finished stay
    done = {i for i in range(len(metas)) if _complete(outdir / f"{i:05d}", n_samples)}
    if done:
        print(f"resuming: {len(done)} of {len(metas)} prompts already in {outdir}")
    print("if interrupted, the same command resumes: the prompts finished are kept")
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
                    with atomic_output(folder / "process" / f"{j:04d}" / f"step_{t:02d}.png") as tmp:
                        Image.fromarray(image).save(tmp, format="PNG")
        geneval.write_prompt_folder(outdir, index, meta, list(to_uint8(result.images)))  # samples last
    return outdir


def _check_same_prompts(outdir: Path, metas: list[dict]) -> None:
    """Refuse a folder whose prompt folders hold other prompts than ``metas`` (never overwrite them)."""
    if not outdir.is_dir():
        return
    for folder in sorted(p for p in outdir.iterdir() if p.is_dir() and p.name.isdigit()):
        index, meta_file = int(folder.name), folder / "metadata.jsonl"
        theirs = json.loads(meta_file.read_text()) if meta_file.is_file() else None
        if index >= len(metas) or (theirs is not None and theirs != metas[index]):
            held = f"'{theirs['prompt']}'" if theirs else "a prompt"
            raise CotlabError(f"{outdir} holds other prompts ({folder.name} is {held}): choose a new --outdir")


def _searcher(model, verifier: str, candidates: int, seed: int, **options):
    """(meta, prompt index, sample) -> the verifier's ``Search`` among ``candidates`` paths."""
    if verifier not in VERIFIERS:
        raise CotlabError(f"unknown verifier '{verifier}': choose one of {', '.join(VERIFIERS)}")
    if candidates < 1:
        raise CotlabError(f"--candidates must be at least 1, got {candidates}")
    checkpoint = VERIFIERS[verifier].checkpoint
    try:
        judge = load_checkpoint(checkpoint) if checkpoint else None
    except FileNotFoundError as e:
        raise CotlabError(str(e)) from None  # it names the training command already

    def one(meta: dict, index: int, sample: int):
        seeds = [path_seed(seed, index, sample, c) for c in range(candidates)]
        return run(verifier, model, meta, seeds, judge, **options)
    return one
