"""Where things live, and files written so that nothing is half-written or silently overwritten.

``DATA_DIR`` (shipped checkpoints, prompt files) is ``data/`` at the repository root, or
``$COTLAB_DATA``; ``RUNS_DIR`` (everything a run writes) is ``runs/``, or ``$COTLAB_RUNS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from cotlab.errors import CotlabError

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("COTLAB_DATA", REPO_ROOT / "data"))
RUNS_DIR = Path(os.environ.get("COTLAB_RUNS", REPO_ROOT / "runs"))


def timestamp() -> str:
    """Local time as ``YYYYmmdd-HHMMSS``, for folder names."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def file_to_write(path: str | Path) -> Path:
    """``path``, refused in one line if it names a folder (a file would have to replace it)."""
    path = Path(path)
    if path.is_dir():
        raise CotlabError(f"{path} is a folder: name a file to write, e.g. {path / 'result.json'}")
    return path


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    path = file_to_write(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp (and some writers, e.g. safetensors) make it private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete what a killed writer left of ``atomic_output`` under ``folder`` (``.NAME.*.tmp``); a
    finished file is never among them. Returns the paths removed."""
    stale = [p for p in Path(folder).rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (readers see the old file or the new one, never half)."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def _to_json(obj: Any) -> Any:
    """Make tensors, NumPy values and paths JSON-serialisable."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # tensors and arrays of any rank, NumPy scalars
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_to_json) + "\n")


def new_run_dir(root: str | Path, stem: str) -> Path:
    """Create and return ``root/stem``, or ``root/stem-2``, ``-3`` … if taken: never an existing folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"too many folders named {root / stem}-N: clean up {root}")


def notebook_run_dir(run_dir: str | Path | None, stem: str) -> Path:
    """The folder a notebook writes to: ``run_dir`` (given by ``cotlab run``), else a new one under ``RUNS_DIR``."""
    if run_dir is None:
        return new_run_dir(RUNS_DIR / "interactive", f"{timestamp()}-{stem}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Add ``metrics`` to ``run_dir/metrics.json`` (top-level keys merged), atomically; return the whole."""
    path = Path(run_dir) / "metrics.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(metrics)
    atomic_write_json(path, merged)
    return merged


def _git(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)


def changed_since(commit: str, paths: list[str], cwd: Path = REPO_ROOT) -> list[str] | None:
    """The ``paths`` (relative to the repository) whose content now — working tree included — differs
    from ``commit``'s, or None when git cannot tell (no repository, or a commit not in its history)."""
    try:
        diff = _git("diff", "--name-only", commit, "--", *paths, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return diff.stdout.split() if diff.returncode == 0 else None


def git_commit() -> str:
    """The repository's short commit, with ``-dirty`` if tracked files changed since; else "unknown"."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = _git("diff", "--quiet", "HEAD").returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")
