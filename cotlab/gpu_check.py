"""``make gpu-check``: the gpu profile, for real, on one CUDA GPU.

Every registered recipe (``cotlab.registry.RECIPES``) trains a few steps in the ``gpu`` profile as
``cotlab train`` would (``make_trainer`` picks bf16-mixed on CUDA), and every shipped generator
(``data/checkpoints/``, any checkpoint that offers ``paths``) draws a few images, in float32. One table then gives,
per model, training throughput (optimiser steps/s and batch rows/s — images for most recipes, pairs
for DPO, prompts for GRPO), generation images/s, peak GPU memory and the wall time of its check; with
the device, the torch version and the precision above it. The first training batch and a one-image
generation are warm-ups, left out of the rates.

A model that cannot run (a missing checkpoint it builds on, out of memory …) is reported as failed
with its one-line reason and the check goes on; the exit status is 1 if any failed. Without CUDA it
refuses (exit 2); ``--device cpu --profile smoke`` runs the same path on the CPU.

    python -m cotlab.gpu_check [--steps 5] [--only maskgit,sana] [--device cpu --profile smoke]
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import import_module

import lightning as L
import torch

from cotlab.bench import parse_names
from cotlab.errors import CotlabError
from cotlab.geneval import benchmark_prompts
from cotlab.harness import make_trainer, quiet_logs, seed_everything
from cotlab.io import DATA_DIR
from cotlab.profiles import PROFILES
from cotlab.registry import RECIPES, get_recipe
from cotlab.sampling import load_generator, samples
from cotlab.options import count

GENERATE = {"smoke": (2, 2), "cpu": (4, 4), "gpu": (8, 8)}  # profile -> (prompts, images per prompt), one batch


@dataclass
class Row:
    """One model's line of the table (rates are None where the model was not trained or sampled)."""
    name: str
    steps_per_s: float | None = None
    rows_per_s: float | None = None
    images_per_s: float | None = None
    peak_gib: float | None = None
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Throughput(L.Callback):
    """Marks (time, optimiser steps, batch rows) at the start of training and after each batch; ``rates``
    gives steps/s and rows/s after the first batch (the warm-up), or over it when it is the only one."""

    def __init__(self, sync):
        self.sync, self.marks = sync, []

    def _mark(self, trainer, rows: int) -> None:
        self.sync()
        self.marks.append((time.perf_counter(), trainer.global_step, rows))

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if not self.marks:
            self._mark(trainer, 0)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        rows = len(batch["image"]) if "image" in batch else len(next(iter(batch.values())))
        self._mark(trainer, self.marks[-1][2] + rows)

    def rates(self) -> tuple[float, float]:
        (t0, s0, r0), (t1, s1, r1) = self.marks[1 if len(self.marks) > 2 else 0], self.marks[-1]
        return (s1 - s0) / (t1 - t0), (r1 - r0) / (t1 - t0)


def shipped_generators() -> list[str]:
    """The shipped checkpoints whose class offers ``paths`` (``cotlab.sampling``), read from their config."""
    names = []
    for config in sorted((DATA_DIR / "checkpoints").glob("*/config.json")):
        module, _, cls = json.loads(config.read_text())["class"].rpartition(".")
        if callable(getattr(getattr(import_module(module), cls), "paths", None)):
            names.append(config.parent.name)
    return names


def train_rates(name: str, profile: str, steps: int, device: str, sync) -> tuple[float, float, str]:
    """Train recipe ``name`` for ``steps`` optimiser steps on ``device``: (steps/s, rows/s, precision)."""
    recipe = get_recipe(name)
    seed_everything(0)
    module = recipe.build(profile)
    timer = Throughput(sync)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(profile, max_steps=steps, run_dir=run_dir, name=name, accelerator=device,
                               callbacks=[timer], enable_progress_bar=False, limit_val_batches=0)
        trainer.fit(module, datamodule=recipe.datamodule(profile, 0))
    return *timer.rates(), str(trainer.precision)


def generate_rate(name: str, profile: str, device: str, sync) -> float:
    """Images per second of the shipped generator ``name``: one batch of a few benchmark prompts."""
    model = load_generator(name).to(device)
    n_prompts, n_samples = GENERATE[profile]
    metas = benchmark_prompts()
    metas = metas[::len(metas) // n_prompts][:n_prompts]
    list(samples(model, metas[:1], n_samples=1))  # warm-up
    sync()
    start = time.perf_counter()
    list(samples(model, metas, n_samples=n_samples, batch_prompts=n_prompts))
    sync()
    return n_prompts * n_samples / (time.perf_counter() - start)


def attempt(row: Row, job: str, run, *args):
    """``run(*args)``, or None with its one-line reason added to ``row``'s errors: the check goes on."""
    try:
        return run(*args)
    except Exception as e:  # a missing checkpoint, out of memory, a bug: the table says which
        reason = " ".join(str(e).split("\n")[0].split()) or type(e).__name__
        row.errors.append(f"{job}: {reason}")
    finally:
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def check(names: list[str], generators: list[str], profile: str, steps: int, device: str) -> tuple[list[Row], set[str]]:
    """Train and sample each of ``names`` as it can (recipe, shipped generator or both): its ``Row``,
    and the precisions the trainers used."""
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    table, precisions = [], set()
    for name in names:
        row, start = Row(name), time.perf_counter()
        print(f"gpu-check: {name} …", file=sys.stderr, flush=True)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        if name in RECIPES:
            rates = attempt(row, "train", train_rates, name, profile, steps, device, sync)
            if rates:
                row.steps_per_s, row.rows_per_s, precision = rates
                precisions.add(precision)
        if name in generators:
            row.images_per_s = attempt(row, "generate", generate_rate, name, profile, device, sync)
        if cuda:
            row.peak_gib = torch.cuda.max_memory_allocated() / 2**30
        row.seconds = time.perf_counter() - start
        table.append(row)
    return table, precisions


def format_table(table: list[Row]) -> str:
    """The Markdown table of ``check``'s rows."""
    def num(value: float | None, digits: int = 1) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    lines = ["| model | train steps/s | train rows/s | generate images/s | peak GPU GiB | seconds | result |",
             "|---|--:|--:|--:|--:|--:|---|"]
    for r in table:
        result = "failed — " + "; ".join(r.errors) if r.errors else "ok"
        lines.append(f"| {r.name} | {num(r.steps_per_s, 2)} | {num(r.rows_per_s)} | {num(r.images_per_s)} | "
                     f"{num(r.peak_gib, 2)} | {r.seconds:.0f} | {result} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cotlab.gpu_check", description=__doc__.split("\n\n")[1])
    parser.add_argument("--steps", type=count, default=5, help="optimiser steps per recipe (default: 5)")
    parser.add_argument("--only", metavar="NAME,NAME", help="only these recipes and shipped generators")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="default: cuda")
    parser.add_argument("--profile", choices=PROFILES, default="gpu", help="default: gpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 if every model ran, 1 if any failed, 2 for bad input or no CUDA."""
    args = build_parser().parse_args(argv)
    try:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise CotlabError("the gpu check needs a CUDA GPU and torch sees none: try it on the CPU with "
                              "python -m cotlab.gpu_check --device cpu --profile smoke")
        if args.steps < 1:
            raise CotlabError(f"--steps must be at least 1, got {args.steps}")
        generators = shipped_generators()
        every = list(RECIPES) + [g for g in generators if g not in RECIPES]
        names = parse_names(args.only) or every
        unknown = [n for n in names if n not in every]
        if unknown:
            raise CotlabError(f"unknown model(s) {', '.join(unknown)} in --only: choose from {', '.join(every)}")
    except CotlabError as e:
        print(f"gpu-check: error: {e}", file=sys.stderr)
        return 2

    quiet_logs()
    start = time.perf_counter()
    table, precisions = check(names, generators, args.profile, args.steps, args.device)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\n{device} · torch {torch.__version__} · {args.profile} profile · {args.steps} steps · "
          f"precision {', '.join(sorted(precisions)) or '—'}\n")
    print(format_table(table))
    peaks = [r.peak_gib for r in table if r.peak_gib is not None]
    failed = [r.name for r in table if r.errors]
    if peaks:
        print(f"\npeak GPU memory: {max(peaks):.2f} GiB")
    print(f"\n{len(table) - len(failed)} of {len(table)} ok in {(time.perf_counter() - start) / 60:.1f} min"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
