"""Training and checkpoints: one home for each.

- ``make_trainer`` builds every ``lightning.Trainer`` of the workbook from the profile;
  ``seed_everything`` seeds Python, NumPy and torch (and dataloader workers).
- ``Model`` is the LightningModule every workbook model builds on: its config dataclass (named by the
  class as ``Config``, kept as ``self.config``, with ``max_steps`` and optionally ``max_minutes``), its
  ``loss(batch)``, the logging loop, AdamW with a warm-up and cosine decay, and the checkpoints it uses
  frozen (``frozen(field)``: a tokenizer, a text encoder, a generator), loaded by one helper.
- A ``Recipe`` says how a model trains and is judged; a topic keeps its recipes in its ``recipes``
  module (so models never import evaluation code) and names them in ``cotlab.registry.RECIPES``;
  ``train(name, profile)`` runs one (``cotlab train NAME``).
- A checkpoint is a folder: ``model.safetensors`` (the state dict), ``config.json`` (class and config),
  ``MODEL_CARD.md`` and ``card.json`` (how it was trained: command, commit, time, steps, metrics).
  Shipped ones live in ``data/checkpoints/NAME``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelSummary, ProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from safetensors.torch import load_model, save_file
from torch.utils.data import IterableDataset

from cotlab.errors import CotlabError
from cotlab.io import (DATA_DIR, REPO_ROOT, RUNS_DIR, atomic_output, atomic_write_json,
                       atomic_write_text, git_commit, new_run_dir, remove_temporaries, timestamp)
from cotlab.profiles import resolve_profile
from cotlab.registry import get_recipe


# ----------------------------------------------------------------------------------------- training

def seed_everything(seed: int) -> int:
    """Seed Python, NumPy, torch and dataloader workers, quietly."""
    return L.seed_everything(seed, workers=True, verbose=False)


def make_trainer(
    profile: str | None,
    *,
    max_steps: int,
    run_dir: str | Path,
    name: str,
    max_time: timedelta | str | None = None,
    val_check_interval: int | float | None = None,
    log_every_n_steps: int = 10,
    enable_checkpointing: bool = False,
    callbacks: Iterable[Callback] = (),
    **overrides: Any,
) -> L.Trainer:
    """A Trainer for ``profile``: the device picked by Lightning, CSV logs in ``run_dir/name/version_N``.

    Mixed precision (bf16) only on CUDA: on CPU, bf16 autocast was slower than fp32 at our sizes.
    ``overrides`` go to ``lightning.Trainer`` as they are (e.g. ``devices=2``, ``limit_val_batches=4``).
    """
    profile = resolve_profile(profile)
    callbacks = list(callbacks)
    if overrides.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    if profile != "smoke" and not any(isinstance(c, ModelSummary) for c in callbacks):
        callbacks.append(ModelSummary())  # a plain table through Lightning's log (not Rich's console), so quiet_logs hides it
    if enable_checkpointing and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(ModelCheckpoint())  # Lightning's .ckpt files, beside the logs
    cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    settings = dict(
        accelerator="auto",
        devices=1,
        precision="bf16-mixed" if cuda_bf16 else "32-true",
        max_steps=max_steps,
        max_time=max_time,
        val_check_interval=val_check_interval,
        log_every_n_steps=max(1, min(log_every_n_steps, max_steps)),  # short runs log at least once
        logger=CSVLogger(run_dir, name=name),
        default_root_dir=run_dir,
        callbacks=callbacks,
        enable_checkpointing=enable_checkpointing,
        enable_model_summary=False,  # the ModelSummary callback above instead
        num_sanity_val_steps=0,
    )
    return L.Trainer(**{**settings, **overrides})


def quiet_logs() -> None:
    """For a notebook, whose reader should see only what its cells print: Lightning's INFO log off
    (device banners, tips, model summaries, "max_steps reached"), and the warnings this workbook
    expects — a deprecation inside Lightning, frozen parts kept in eval mode while a model trains, a
    data module's validation data for a model that does not validate, few batches per epoch."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    for message in (".*LeafSpec.*", ".*modules? in eval mode.*", ".*no `validation_step`.*",
                    ".*number of training batches.*"):
        warnings.filterwarnings("ignore", message=message)


def fit(module: L.LightningModule, datamodule: L.LightningDataModule, *, profile: str | None,
        run_dir: str | Path, name: str, checkpoint_every: int | None = None,
        **trainer_options: Any) -> L.Trainer:
    """Train ``module`` for its config's ``max_steps`` (and at most ``max_minutes``); return the trainer.
    ``trainer_options`` go to ``make_trainer`` (e.g. ``log_every_n_steps=1`` for a short demo).

    With ``checkpoint_every`` a resumable state (``run_dir/resume/last.ckpt``: weights, optimiser,
    schedule, step, random generators) is written every that many steps, and if one is already there
    training resumes from it: the data stream is fast-forwarded past the batches already trained on,
    so a resumed run ends as the uninterrupted one would (for data drawn as a stream from its seed)."""
    max_minutes = getattr(module.config, "max_minutes", None)
    trainer_options.setdefault("log_every_n_steps", getattr(module, "LOG_EVERY_N_STEPS", 10))
    resume = None
    if checkpoint_every is not None:
        state = Path(run_dir) / "resume"
        resume = state / "last.ckpt" if (state / "last.ckpt").is_file() else None
        trainer_options["callbacks"] = [*trainer_options.get("callbacks", ()), LastCheckpoint(state, checkpoint_every),
                                        RandomState()]
        trainer_options["enable_checkpointing"] = True
    trainer = make_trainer(profile, max_steps=module.config.max_steps, run_dir=run_dir, name=name,
                           max_time=timedelta(minutes=max_minutes) if max_minutes else None,
                           **trainer_options)
    if resume is not None:
        datamodule.train_dataloader = _fast_forward(datamodule.train_dataloader, trainer)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    return trainer


class LastCheckpoint(ModelCheckpoint):
    """Lightning's checkpoint every ``every`` training steps, always to ``folder/last.ckpt`` and whole
    or not at all (written beside it, then renamed), so a killed run leaves the previous one intact."""

    def __init__(self, folder: str | Path, every: int):
        super().__init__(dirpath=folder, filename="last", every_n_train_steps=every, save_top_k=1,
                         enable_version_counter=False)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        with atomic_output(filepath) as tmp:
            super()._save_checkpoint(trainer, str(tmp))
        self._last_checkpoint_saved = filepath


class RandomState(Callback):
    """The random generators' states in the checkpoint, restored when training resumes, so that the
    noise, masks and timesteps after a resume are those of the uninterrupted run."""

    def __init__(self):
        self.loaded: dict | None = None

    def state_dict(self) -> dict:
        import random

        import numpy as np
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position,
                                                        has_gauss, gauss), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.loaded = state_dict

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.loaded is None:
            return
        import random

        import numpy as np
        random.setstate(self.loaded["python"])
        kind, keys, position, has_gauss, gauss = self.loaded["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        torch.set_rng_state(self.loaded["torch"])
        if "cuda" in self.loaded and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.loaded["cuda"])


class _Skipping:
    """An iterable over ``loader`` past its first ``n`` items."""

    def __init__(self, loader: Iterable, n: int):
        self.loader, self.n = loader, n

    def __iter__(self):
        import itertools

        return itertools.islice(iter(self.loader), self.n, None)


def _fast_forward(train_dataloader: Callable[[], Iterable], trainer: L.Trainer) -> Callable[[], Iterable]:
    """``train_dataloader`` with the batches of the steps already trained skipped (counted when the
    resumed fit asks for its data, after the checkpoint has restored the step). Only an endless
    stream is skipped; a finite data set's epoch starts again, as Lightning does."""

    def loader() -> Iterable:
        data = train_dataloader()
        if hasattr(data, "__len__") and not isinstance(getattr(data, "dataset", None), IterableDataset):
            return data
        return _Skipping(data, trainer.global_step * trainer.accumulate_grad_batches)
    return loader


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of the workbook's models: a linear warm-up over ``warmup`` steps,
    then a cosine decay to zero at ``total``. Step it every optimizer step (``"interval": "step"``)."""
    def factor(step: int) -> float:
        progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
        return min(1.0, (step + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def logged_history(trainer: L.Trainer) -> dict[str, list[tuple[int, float]]]:
    """What the trainer's CSV logger recorded: ``{name: [(step, value), ...]}``, for plotting. A resumed
    run logs into a new version folder; its rows replace the earlier ones from the step it resumed at."""
    import csv

    rows: dict[int, dict[str, float]] = {}
    versions = sorted(Path(trainer.logger.root_dir).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    for version in versions:  # a run shorter than its logging interval logged nothing
        path = version / "metrics.csv"
        if not path.is_file():
            continue
        with open(path) as f:
            logged = list(csv.DictReader(f))
        if logged:
            first = min(int(r["step"]) for r in logged)
            rows = {step: row for step, row in rows.items() if step < first}
        for row in logged:
            values = {k: float(v) for k, v in row.items() if k not in ("step", "epoch") and v not in ("", None)}
            rows.setdefault(int(row["step"]), {}).update(values)
    history: dict[str, list[tuple[int, float]]] = {}
    for step in sorted(rows):
        for key, value in rows[step].items():
            history.setdefault(key, []).append((step, value))
    return history


class Model(L.LightningModule):
    """The shape every workbook model shares.

    A subclass names its config dataclass as ``Config`` and defines ``loss(batch) -> (loss, logs)``;
    training logs ``train_loss`` and ``train_<name>`` for every entry of ``logs``, on the progress bar
    for the names in ``PROGRESS``. A model that validates says so with ``validation_step`` calling
    ``log_step("val", batch)`` (Lightning validates only the models that define it). The optimiser is AdamW over
    ``parameter_groups()`` with the config's ``lr`` and ``weight_decay`` (default 0), stepped with
    ``warmup_cosine`` over its ``warmup_steps`` (default 0) and ``max_steps``.
    """

    Config: ClassVar[type]
    PROGRESS: ClassVar[tuple[str, ...]] = ()  # logged names also shown on the progress bar
    BETAS: ClassVar[tuple[float, float]] = (0.9, 0.999)  # AdamW's β₁, β₂
    LOG_EVERY_N_STEPS: ClassVar[int] = 10  # how often training logs (fewer, costlier steps log more often)

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.save_hyperparameters(config.to_dict())

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of a batch, and what else to log ``{name: value}``."""
        raise NotImplementedError

    def log_step(self, stage: str, batch: dict) -> torch.Tensor:
        """The loss of ``batch``, logged as ``{stage}_loss`` with its logs as ``{stage}_<name>``."""
        loss, logs = self.loss(batch)
        B = len(batch["image"]) if "image" in batch else len(next(iter(batch.values())))
        sync = stage == "val"
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=B, sync_dist=sync)
        for name, value in logs.items():
            self.log(f"{stage}_{name}", value, prog_bar=name in self.PROGRESS, batch_size=B, sync_dist=sync)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.log_step("train", batch)

    def parameter_groups(self) -> list[dict]:
        """AdamW's parameter groups (e.g. no weight decay on embeddings); default: one group."""
        return [{"params": list(self.parameters())}]

    def configure_optimizers(self):
        """AdamW; a linear warm-up, then a cosine decay to zero at ``max_steps``."""
        c = self.config
        optimizer = torch.optim.AdamW(self.parameter_groups(), lr=c.lr, weight_decay=getattr(c, "weight_decay", 0.0),
                                      betas=self.BETAS)
        scheduler = warmup_cosine(optimizer, getattr(c, "warmup_steps", 0), c.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def frozen(self, field: str) -> L.LightningModule:
        """The checkpoint named by ``self.config.<field>`` (e.g. ``"tokenizer"``), loaded on first use,
        in eval mode without gradients, on this model's device. Not a submodule: neither trained nor
        saved with this model. ``set_frozen`` hands one in instead, as a pipeline composes its parts.
        Loading never moves the global random stream, so training is the same whenever a part loads."""
        parts = self.__dict__.setdefault("_frozen_parts", {})
        if field not in parts:
            with torch.random.fork_rng():  # building it draws initial weights: a lazy load leaves the random stream alone
                parts[field] = load_checkpoint(getattr(self.config, field)).requires_grad_(False)
        if parts[field].device != self.device:
            parts[field].to(self.device)
        return parts[field]

    def set_frozen(self, field: str, module: L.LightningModule) -> None:
        """Use ``module`` (already loaded) as the frozen part ``field``."""
        self.__dict__.setdefault("_frozen_parts", {})[field] = module.eval().requires_grad_(False)


@dataclass(frozen=True)
class Recipe:
    """How ``cotlab train NAME`` trains one model and judges it (its ``evaluate`` gives the card's metrics)."""

    name: str
    build: Callable[[str], L.LightningModule]  # profile -> a fresh model
    datamodule: Callable[[str, int], L.LightningDataModule]  # (profile, seed) -> its data
    evaluate: Callable[[L.LightningModule, str], dict] | None = None  # (model, profile) -> headline metrics
    description: str = ""

    @classmethod
    def of(cls, name: str, model_class: type, description: str, evaluate=None, config_class: type | None = None,
           view=None, cpu: dict | None = None, **overrides: Any) -> Recipe:
        """The usual recipe: ``model_class(config)`` with ``config = config_class.for_profile(profile,
        **overrides)`` (``config_class`` defaults to ``model_class.Config``; ``cpu``: further overrides
        in the cpu profile only, e.g. a step budget fitted to two cores), trained on Shapes batches of
        the config's ``batch_size``, seen through ``view`` (default: images with captions)."""
        config_class = config_class or model_class.Config

        def config(profile: str):
            return config_class.for_profile(profile, **overrides, **((cpu or {}) if profile == "cpu" else {}))

        def datamodule(profile: str, seed: int) -> L.LightningDataModule:
            from cotlab.shapes import ShapesDataModule, captioned

            return ShapesDataModule(batch_size=config(profile).batch_size, seed=seed, view=view or captioned)

        return cls(name, lambda profile: model_class(config(profile)), datamodule, evaluate, description)


def train(
    name: str,
    profile: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    ship: bool = False,
    checkpoint_every: int = 100,
) -> tuple[L.LightningModule, dict[str, Any], Path]:
    """Train model ``name`` from scratch, evaluate it, and save a checkpoint; return (model, metrics, folder).

    Logs go to ``out`` or a new ``runs/train/NAME-PROFILE-TIME/``; the checkpoint goes there too, or,
    with ``ship``, replaces ``data/checkpoints/NAME`` (the old one stays until the new one is complete).
    Every ``checkpoint_every`` steps the run's state is saved; an interrupted run is resumed by the same
    command with ``out`` its folder, and ends as it would have uninterrupted."""
    recipe = get_recipe(name)
    profile = resolve_profile(profile)
    if checkpoint_every < 1:
        raise CotlabError(f"--checkpoint-every must be at least 1 step, got {checkpoint_every}")
    settings = {"name": name, "profile": profile, "seed": seed}
    if out is not None:
        run_dir = Path(out)
        _check_resumable(run_dir, settings)
    else:
        run_dir = new_run_dir(RUNS_DIR / "train", f"{name}-{profile}-{timestamp()}")
    atomic_write_json(run_dir / "train.json", settings)
    resuming = (run_dir / "resume" / "last.ckpt").is_file()
    remove_temporaries(run_dir)
    command = f"cotlab train {name} --profile {profile} --seed {seed}" + (" --ship" if ship else "")
    print(f"{'resuming' if resuming else 'training'} {name} in {run_dir}; if interrupted, resume with: "
          f"{command} --out {run_dir}")

    seed_everything(seed)
    module = recipe.build(profile)
    start = time.perf_counter()
    trainer = fit(module, recipe.datamodule(profile, seed), profile=profile, run_dir=run_dir, name=name,
                  checkpoint_every=checkpoint_every)
    train_seconds = time.perf_counter() - start

    module.eval()
    metrics = {k: v.item() for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if recipe.evaluate is not None:
        with torch.no_grad():
            metrics.update(recipe.evaluate(module, profile))

    card = dict(
        name=name,
        profile=profile,
        command=command,
        train_seconds=train_seconds,
        steps=trainer.global_step,
        metrics=metrics,
        history=logged_history(trainer),
    )
    if ship:
        directory = _replace_folder(DATA_DIR / "checkpoints" / name, lambda tmp: save_checkpoint(module, tmp, **card))
    else:
        directory = save_checkpoint(module, run_dir, **card)
    shutil.rmtree(run_dir / "resume", ignore_errors=True)  # finished: the checkpoint is what counts now
    return module, metrics, directory


def _check_resumable(run_dir: Path, settings: dict) -> None:
    """Refuse an ``--out`` folder that holds anything but an unfinished run of these settings."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return
    if (run_dir / "model.safetensors").exists():
        raise CotlabError(f"{run_dir} holds a finished checkpoint: choose a new --out folder")
    try:
        before = json.loads((run_dir / "train.json").read_text())
    except (FileNotFoundError, ValueError):
        raise CotlabError(f"{run_dir} is not empty and holds no run to resume: choose a new --out folder") from None
    if before != settings:
        raise CotlabError(f"{run_dir} holds a run of {before}, not {settings}: resume it with those settings, "
                          "or choose a new --out folder")


def _replace_folder(target: Path, write: Callable[[Path], Any]) -> Path:
    """Let ``write`` fill a new sibling folder, then swap it in for ``target`` (removing the old one)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-new-"))
    os.chmod(new, 0o755)  # mkdtemp makes it private
    try:
        write(new)
        if target.exists():
            old = new.with_name(new.name.replace("-new-", "-old-"))
            os.rename(target, old)
            os.rename(new, target)
            shutil.rmtree(old)
        else:
            os.rename(new, target)
    finally:
        shutil.rmtree(new, ignore_errors=True)  # only left if something failed
    return target


# -------------------------------------------------------------------------------------- checkpoints

def evaluate_checkpoint(name_or_path: str | Path) -> dict[str, Any]:
    """Re-measure a checkpoint with its recipe's evaluation and the code as it is now (say, after a
    change to decoding); its card keeps the training facts and gets the new metrics, with the date
    and commit of the measurement under ``evaluated``. Returns the new metrics."""
    folder = _checkpoint_folder(name_or_path)
    card = checkpoint_card(folder)
    recipe = get_recipe(card["name"])
    if recipe.evaluate is None:
        raise CotlabError(f"{card['name']} has no evaluation to re-run: its recipe defines none")
    with torch.no_grad():
        metrics = recipe.evaluate(load_checkpoint(folder), card["profile"])
    card["metrics"].update(metrics)
    card["evaluated"] = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": git_commit(),
                         "command": f"cotlab evaluate {name_or_path}"}
    atomic_write_json(folder / "card.json", card)
    atomic_write_text(folder / "MODEL_CARD.md", _model_card_markdown(card))
    return metrics


def save_checkpoint(
    module: L.LightningModule,
    directory: str | Path,
    *,
    name: str,
    profile: str,
    command: str,
    train_seconds: float,
    steps: int,
    metrics: dict[str, Any],
    history: dict[str, list[tuple[int, float]]] | None = None,
) -> Path:
    """Write ``module`` as a checkpoint folder with its model card (and, if given, its training
    ``history`` as history.json, for plots); each file atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cls = type(module)
    class_path = f"{cls.__module__}.{cls.__qualname__}"
    save_weights(module, directory / "model.safetensors")
    atomic_write_json(directory / "config.json",
                      {"class": class_path, "name": name, "profile": profile, "config": asdict(module.config)})
    card = {
        "name": name,
        "class": class_path,
        "description": (cls.__doc__ or "").strip().split("\n")[0],
        "parameters": sum(p.numel() for p in module.parameters()),
        "profile": profile,
        "command": command,
        "commit": git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "train_seconds": round(train_seconds, 1),
        "steps": steps,
        "metrics": metrics,
    }
    atomic_write_json(directory / "card.json", card)
    if history is not None:
        atomic_write_json(directory / "history.json", history)
    atomic_write_text(directory / "MODEL_CARD.md", _model_card_markdown(card))
    return directory


def save_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Write ``module``'s tensors to a safetensors file, floating-point ones in float16: half the
    bytes for a relative rounding of at most 2^-11 ≈ 5e-4 (tensors beyond float16's range stay
    float32). A tied tensor is stored once. Loading casts back to the model's dtype."""
    tensors, seen = {}, set()
    for key, tensor in module.state_dict().items():
        identity = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride())
        if tensor.numel() and identity in seen:
            continue  # a tied weight: load_model restores it from its twin
        seen.add(identity)
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point() and tensor.numel() and tensor.abs().max() < torch.finfo(torch.float16).max:
            tensor = tensor.half()
        tensors[key] = tensor.contiguous()
    with atomic_output(Path(path)) as tmp:
        save_file(tensors, str(tmp))


def load_checkpoint(name_or_path: str | Path, map_location: str | torch.device = "cpu") -> L.LightningModule:
    """Load a checkpoint folder, or the shipped checkpoint ``name``, as a model in eval mode.

    A ``Path``, or a string containing ``/``, is a folder; any other string names ``data/checkpoints/NAME``.
    """
    directory = _checkpoint_folder(name_or_path)
    saved = json.loads((directory / "config.json").read_text())
    module_name, class_name = saved["class"].rsplit(".", 1)
    cls = getattr(import_module(module_name), class_name)
    module = cls(cls.Config(**saved["config"]))
    load_model(module, directory / "model.safetensors")  # strict: every tensor must match
    return module.to(map_location).eval()


def load_or_train(name: str, profile: str | None = None, use_pretrained: bool = True,
                  seed: int = 0) -> tuple[L.LightningModule, Path]:
    """(model, its checkpoint folder): the shipped checkpoint ``name`` if ``use_pretrained`` (and it
    exists), else ``train`` it now in ``profile``, into a new ``runs/train/`` folder (the shipped one
    is left alone)."""
    if use_pretrained:
        try:
            return load_checkpoint(name), _checkpoint_folder(name)
        except FileNotFoundError as e:
            print(f"{e}; training it now ({resolve_profile(profile)} profile)")
    model, _, folder = train(name, profile, seed=seed)
    return model, folder


def checkpoint_config(name_or_path: str | Path) -> dict[str, Any]:
    """The config fields a checkpoint was built with, without loading its weights."""
    return json.loads((_checkpoint_folder(name_or_path) / "config.json").read_text())["config"]


def checkpoint_card(name_or_path: str | Path) -> dict[str, Any]:
    """The facts of a checkpoint's model card: command, commit, date, time, steps, metrics …"""
    return json.loads((_checkpoint_folder(name_or_path) / "card.json").read_text())


def checkpoint_history(name_or_path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """What was logged while a checkpoint trained, ``{name: [(step, value), ...]}`` as
    ``logged_history`` gives it; empty for checkpoints saved without one."""
    path = _checkpoint_folder(name_or_path) / "history.json"
    return {k: [tuple(p) for p in v] for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}


def _checkpoint_folder(name_or_path: str | Path) -> Path:
    """The folder behind a checkpoint name or path, or a one-line error naming the fix."""
    if isinstance(name_or_path, Path) or "/" in name_or_path or os.sep in name_or_path:
        directory = Path(name_or_path)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"no checkpoint at {directory}: expected a folder with model.safetensors "
                                    "and config.json, as written by cotlab train")
        return directory
    directory = DATA_DIR / "checkpoints" / name_or_path
    if not (directory / "config.json").is_file():
        shown = os.path.relpath(directory, REPO_ROOT) if directory.is_relative_to(REPO_ROOT) else directory
        raise FileNotFoundError(f"no checkpoint '{name_or_path}' at {shown} — "
                                f"train it with: cotlab train {name_or_path} --profile cpu --ship")
    return directory


def _model_card_markdown(card: dict[str, Any]) -> str:
    """The human-readable model card."""
    def fmt(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    facts = [
        ("class", f"`{card['class']}`"),
        ("parameters", f"{card['parameters']:,}"),
        ("profile", card["profile"]),
        ("trained with", f"`{card['command']}`"),
        ("commit", card["commit"]),
        ("date (UTC)", card["date"]),
        ("training time", f"{card['train_seconds'] / 60:.1f} min"),
        ("steps", card["steps"]),
    ]
    if "evaluated" in card:
        facts.append(("metrics measured", f"{card['evaluated']['date']} at {card['evaluated']['commit']} "
                                          f"(`{card['evaluated']['command']}`)"))
    lines = [f"# Model card: {card['name']}", "", card["description"] or card["class"], "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in facts]
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {fmt(value)} |" for key, value in card["metrics"].items()] or ["| (none) | |"]
    lines += ["", "Load it with `cotlab.harness.load_checkpoint(FOLDER)`, or by name once shipped to "
                  f"data/checkpoints: `load_checkpoint(\"{card['name']}\")`.", ""]
    return "\n".join(lines)
