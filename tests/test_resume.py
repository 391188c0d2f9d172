"""Runs that survive interruption: ``cotlab train``, ``cotlab generate`` and ``cotlab run`` are started as
child processes, really interrupted (SIGINT as Ctrl-C sends it, SIGTERM as a scheduler sends it, SIGKILL
as the out-of-memory killer does) once they have written something, and started again with the same
command. Nothing already written may be lost or left half-written, and the resumed run must end with
exactly what an uninterrupted run gives. Each command meets one of the three signals (each was tried
with all three when this was written; the parametrisations take more, at half a minute each).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def cotlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "cotlab.cli", *args]


def start(command: list[str], log: Path, **env: str) -> subprocess.Popen:
    env = {**os.environ, "COTLAB_PROFILE": "smoke", "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(command, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def interrupt_when(process: subprocess.Popen, ready, sig: signal.Signals, log: Path, timeout: float = 300) -> None:
    """Send ``sig`` to ``process`` as soon as ``ready()`` holds; fail if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the run ended before it could be interrupted: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"nothing to interrupt after {timeout} s: {log.read_text()[-2000:]}"
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(sig)
    process.wait(timeout=120)
    assert process.returncode != 0, "an interrupted run must not report success"


def finish(command: list[str], log: Path, **env: str) -> None:
    process = start(command, log, **env)
    assert process.wait(timeout=600) == 0, log.read_text()[-3000:]


def no_partial_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".running.ipynb"))]
    assert not leftovers, f"partial files left behind: {leftovers[:5]}"


# ------------------------------------------------------------------------------------------- train
TRAIN = ("train", "maskgit", "--profile", "smoke", "--checkpoint-every", "1")


@pytest.fixture(scope="module")
def trained_uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("train") / "whole"
    finish(cotlab(*TRAIN, "--out", str(out)), out.with_suffix(".log"))
    return load_file(out / "model.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGKILL"])
def test_interrupted_training_resumes_to_the_same_weights(sig, trained_uninterrupted, tmp_path):
    out, log = tmp_path / "run", tmp_path / "train.log"
    state = out / "resume" / "last.ckpt"
    interrupt_when(start(cotlab(*TRAIN, "--out", str(out)), log), state.is_file, SIGNALS[sig], log)
    assert not (out / "model.safetensors").exists(), "an interrupted run must not save a checkpoint as finished"
    torch.load(state, weights_only=False)  # the state a resume needs is whole
    finish(cotlab(*TRAIN, "--out", str(out)), tmp_path / "resumed.log")
    assert "resuming" in (tmp_path / "resumed.log").read_text()
    resumed = load_file(out / "model.safetensors")
    assert resumed.keys() == trained_uninterrupted.keys()
    different = [k for k in resumed if not torch.equal(resumed[k], trained_uninterrupted[k])]
    assert not different, f"the resumed run ends with other weights: {different[:5]}"
    card = json.loads((out / "card.json").read_text())
    assert card["steps"] == json.loads((out / "config.json").read_text())["config"]["max_steps"]
    no_partial_files(out)


# ---------------------------------------------------------------------------------------- generate
def generate(metadata: Path, out: Path) -> list[str]:
    return cotlab("generate", "maskgit", "--metadata", str(metadata), "--outdir", str(out), "--n-samples", "2",
                  "--save-process")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    from cotlab.geneval import stratified_prompts

    path = tmp_path_factory.mktemp("prompts") / "metadata.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in stratified_prompts(40)))
    return path


@pytest.fixture(scope="module")
def generated_uninterrupted(prompts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generate") / "whole"
    finish(generate(prompts, out), out.with_suffix(".log"))
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT"])
def test_interrupted_generation_resumes_to_the_same_images(sig, prompts, generated_uninterrupted, tmp_path):
    out, log = tmp_path / "run", tmp_path / "generate.log"
    third = out / "00002" / "samples" / "0001.png"
    interrupt_when(start(generate(prompts, out), log), third.is_file, SIGNALS[sig], log)
    written = files(out)
    assert len(list(out.glob("0*"))) < len(prompts.read_text().splitlines()), "interrupted before the end"
    finish(generate(prompts, out), tmp_path / "resumed.log")
    assert "resuming" in (tmp_path / "resumed.log").read_text()
    after = files(out)
    assert all(after.get(name) == data for name, data in written.items() if not name.endswith(".tmp")), \
        "a file written before the interruption was changed or lost"
    whole = files(generated_uninterrupted)
    assert after.keys() == whole.keys()
    assert [n for n in whole if after[n] != whole[n]] == [], "the resumed run drew other images"
    no_partial_files(out)


# --------------------------------------------------------------------------------------------- run
def notebook(*cells: str) -> dict:
    """A notebook of code cells, the first its parameters."""
    code = [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None} for c in cells]
    code[0]["metadata"]["tags"] = ["parameters"]
    return {"cells": code, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                       "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}


PARAMETERS = "profile = 'cpu'\nrun_dir = None"
WRITE = ("import json, pathlib\nd = pathlib.Path(run_dir); d.mkdir(parents=True, exist_ok=True)\n"
         "(d / 'metrics.json').write_text(json.dumps({'{name}': sum(range({n}))}))")


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> Path:
    """Two small notebooks; the second takes a few seconds, long enough to be interrupted in."""
    folder = tmp_path_factory.mktemp("notebooks")
    (folder / "00_first.ipynb").write_text(json.dumps(notebook(PARAMETERS, WRITE.replace("{name}", "first")
                                                                .replace("{n}", "10"))))
    (folder / "01_second.ipynb").write_text(json.dumps(notebook(
        PARAMETERS, "import time\ntime.sleep(4)",
        WRITE.replace("{name}", "second").replace("{n}", "100"))))
    return folder


def run_folder(runs: Path) -> Path:
    return next(p for p in runs.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def run_uninterrupted(notebooks, tmp_path_factory) -> list[dict]:
    runs = tmp_path_factory.mktemp("whole")
    finish(cotlab("run", "--profile", "smoke"), runs / "run.log", COTLAB_NOTEBOOKS=str(notebooks), COTLAB_RUNS=str(runs))
    return json.loads((run_folder(runs) / "summary.json").read_text())["notebooks"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM"])
def test_interrupted_run_resumes_with_the_finished_notebooks_kept(sig, notebooks, run_uninterrupted, tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "run.log"
    env = {"COTLAB_NOTEBOOKS": str(notebooks), "COTLAB_RUNS": str(runs)}
    second_started = lambda: runs.is_dir() and any(runs.glob("*/.01_second.running.ipynb"))
    interrupt_when(start(cotlab("run", "--profile", "smoke"), log, **env), second_started, SIGNALS[sig], log)
    out = run_folder(runs)
    first = (out / "00_first.ipynb").read_bytes()
    assert not (out / "01_second.ipynb").exists(), "an unfinished notebook must not look finished"
    finish(cotlab("run", "--resume", str(out)), tmp_path / "resumed.log", **env)
    assert "kept from the interrupted run" in (tmp_path / "resumed.log").read_text()
    assert (out / "00_first.ipynb").read_bytes() == first, "a finished notebook was run again"
    resumed = json.loads((out / "summary.json").read_text())["notebooks"]
    assert [(r["notebook"], r["status"], r["metrics"]) for r in resumed] == \
        [(r["notebook"], r["status"], r["metrics"]) for r in run_uninterrupted]
    no_partial_files(out)
