"""``cotlab run``: execute the notebooks headless with papermill, each run into a new folder.

A run folder ``runs/<YYYYmmdd-HHMMSS>-<profile>/`` holds, for each notebook ``NN_name``: the executed
``NN_name.ipynb``, its ``NN_name.html`` page and the ``NN_name/`` folder where the notebook writes its
figures and ``metrics.json``; plus ``summary.md`` and ``summary.json`` over all of them. An interrupted
run is finished by ``cotlab run --resume FOLDER``: the notebooks that completed are kept as they are, the
rest run again from the start (a notebook's executed copy appears only once it has run to the end).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cotlab.errors import CotlabError
from cotlab.io import REPO_ROOT, RUNS_DIR, atomic_write_json, atomic_write_text, new_run_dir, timestamp
from cotlab.profiles import resolve_profile

NOTEBOOKS_DIR = Path(os.environ.get("COTLAB_NOTEBOOKS", REPO_ROOT / "notebooks"))
STATUS_MARK = {"ok": "✓", "failed": "✗", "skipped": "–"}


def parse_value(text: str) -> Any:
    """Read a ``-p NAME VALUE`` value as papermill does: True/False/None, int, float, else the string."""
    constants = {"True": True, "False": False, "None": None}
    if text in constants:
        return constants[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def list_notebooks(notebooks_dir: str | Path = NOTEBOOKS_DIR, only: list[str] | None = None) -> list[Path]:
    """The ``NN_*.ipynb`` notebooks in reading order, or those whose number is in ``only``."""
    notebooks = sorted(Path(notebooks_dir).resolve().glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise CotlabError(f"no NN_*.ipynb notebooks in {notebooks_dir}")
    if only is None:
        return notebooks
    available = [nb.name[:2] for nb in notebooks]
    unknown = [n for n in only if n not in available]
    if unknown:
        raise CotlabError(f"no notebook numbered {', '.join(unknown)}: choose from {', '.join(available)}")
    return [nb for nb in notebooks if nb.name[:2] in only]


def run_notebooks(
    profile: str | None = None,
    only: list[str] | None = None,
    params: dict[str, Any] | None = None,
    stop_on_error: bool = False,
    out_root: str | Path | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    resume: str | Path | None = None,
) -> Path:
    """Execute the notebooks in ``profile`` with ``params`` injected; return the new run folder.

    A failing notebook is recorded (its cell and error) and the run goes on, unless ``stop_on_error``.
    With ``resume`` (an interrupted run's folder) the profile, notebooks and parameters are that run's,
    and only the notebooks it did not finish run again."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    kept: dict[str, dict[str, Any]] = {}
    if resume is not None:
        out, profile, only, params, kept = _resumed(Path(resume))
    profile = resolve_profile(profile)
    params = dict(params or {})
    if "profile" in params:
        raise CotlabError("set the profile with --profile, not -p profile")
    if "run_dir" in params:
        raise CotlabError("cotlab run chooses each notebook's run_dir itself: drop -p run_dir")
    notebooks = list_notebooks(notebooks_dir, only)
    known = set().union(*(papermill.inspect_notebook(str(nb)) for nb in notebooks))
    unknown = sorted(set(params) - known)
    if unknown:
        raise CotlabError(f"no notebook of this run has a parameter {unknown[0]!r}: choose from "
                          f"{', '.join(sorted(known - {'profile', 'run_dir'}))}")
    if resume is None:
        out = new_run_dir(out_root or RUNS_DIR, f"{timestamp()}-{profile}").resolve()
    print(f"cotlab run: {len(notebooks)} notebook(s), profile {profile}, into {out}; if interrupted, finish it "
          f"with: cotlab run --resume {out}")
    _write_plan(out, profile, only, params)

    results: list[dict[str, Any]] = []
    for i, nb in enumerate(notebooks, 1):
        if nb.stem in kept:
            print(f"[{i}/{len(notebooks)}] {nb.stem}: kept from the interrupted run")
            results.append(kept[nb.stem])
            continue
        if stop_on_error and any(r["status"] == "failed" for r in results):
            results.append({"notebook": nb.stem, "status": "skipped", "minutes": 0.0, "metrics": {}, "error": None})
            continue
        print(f"[{i}/{len(notebooks)}] {nb.stem}")
        run_dir = out / nb.stem
        shutil.rmtree(run_dir, ignore_errors=True)  # what an interrupted attempt left
        running = out / f".{nb.stem}.running.ipynb"  # papermill saves as it goes: renamed once it ends
        error = None
        start = time.perf_counter()
        try:
            with _environment(COTLAB_PROFILE=profile):
                papermill.execute_notebook(
                    nb, running,
                    parameters={"profile": profile, "run_dir": str(run_dir), **params},
                    cwd=nb.parent, kernel_name="python3", progress_bar=True, execution_timeout=None,
                )
        except PapermillExecutionError as e:
            error = {"cell": e.cell_index, "execution_count": e.exec_count, "name": e.ename, "message": e.evalue}
        except Exception as e:  # the kernel died, could not start, …
            error = {"cell": None, "execution_count": None, "name": type(e).__name__, "message": str(e)}
        result = {
            "notebook": nb.stem,
            "status": "failed" if error else "ok",
            "minutes": (time.perf_counter() - start) / 60,
            "metrics": _read_metrics(run_dir),
            "error": error,
        }
        results.append(result)
        print(f"    {STATUS_MARK[result['status']]} {result['minutes']:.2f} min  "
              f"{_failure(error) or _headline(result['metrics'])}")
        if running.exists():
            running.replace(out / nb.name)
            _export_html(out / nb.name, out / f"{nb.stem}.html")
        _write_summary(out, profile, params, results)

    summary = _write_summary(out, profile, params, results)
    print()
    print(summary)
    print(f"summary: {out / 'summary.md'}")
    return out


def _write_plan(out: Path, profile: str, only: list[str] | None, params: dict[str, Any]) -> None:
    """``run.json``: what this run was asked to do, so that ``--resume`` can finish it."""
    atomic_write_json(out / "run.json", {"profile": profile, "only": only, "parameters": params})


def _resumed(out: Path) -> tuple[Path, str, list[str] | None, dict[str, Any], dict[str, dict[str, Any]]]:
    """An interrupted run's folder, profile, notebooks, parameters and finished notebooks' results."""
    try:
        plan = json.loads((out / "run.json").read_text())
    except (FileNotFoundError, ValueError):
        raise CotlabError(f"{out} is not a cotlab run folder (no run.json): pass the folder "
                          "`cotlab run` printed, e.g. runs/20261129-120000-cpu") from None
    for stale in out.glob(".*.running.ipynb"):
        stale.unlink()
    summary = out / "summary.json"
    done = json.loads(summary.read_text())["notebooks"] if summary.is_file() else []
    kept = {r["notebook"]: r for r in done if r["status"] == "ok" and (out / f"{r['notebook']}.ipynb").is_file()}
    return out.resolve(), plan["profile"], plan["only"], plan["parameters"], kept


def refresh_notebooks(profile: str | None = None, only: list[str] | None = None,
                      notebooks_dir: str | Path = NOTEBOOKS_DIR) -> None:
    """Execute the committed notebooks in place, in ``profile`` (default cpu): the outputs readers see.

    It runs with ``interactive = False`` (static figures, what a reader sees on GitHub), and papermill's
    injected cell that says so is then dropped: opened in JupyterLab, the notebook runs its viewers as
    widgets. The profile comes from the environment, so ``make test``'s nbval can execute the same
    notebook again in the smoke profile. Figures go to a new ``runs/interactive/`` folder as in
    JupyterLab, and the widgets' saved state is dropped."""
    import papermill

    profile = resolve_profile(profile)
    for nb in list_notebooks(notebooks_dir, only):
        start = time.perf_counter()
        running = nb.with_name(f".{nb.stem}.running.ipynb")  # the committed notebook stays whole if this fails
        with _environment(COTLAB_PROFILE=profile):
            papermill.execute_notebook(nb, running, parameters={"interactive": False}, cwd=nb.parent,
                                       kernel_name="python3", progress_bar=False, execution_timeout=None)
        notebook = json.loads(running.read_text())
        notebook["metadata"].pop("widgets", None)
        notebook["metadata"].get("papermill", {}).pop("parameters", None)
        notebook["cells"] = [c for c in notebook["cells"] if "injected-parameters" not in c["metadata"].get("tags", [])]
        atomic_write_text(nb, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
        running.unlink()
        print(f"{nb.name}: {(time.perf_counter() - start) / 60:.1f} min in the {profile} profile")


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by the kernel) for the duration of the block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    """The notebook's ``metrics.json``, or ``{}`` if it wrote none (or a broken one)."""
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _export_html(notebook: Path, html: Path) -> None:
    """Render an executed notebook as a standalone HTML page."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    atomic_write_text(html, body)


def _headline(metrics: dict[str, Any]) -> str:
    """The top-level numbers of a metrics.json, on one line."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items())


def _failure(error: dict[str, Any] | None) -> str:
    """Where a notebook failed and with what, on one line."""
    if error is None:
        return ""
    where = "" if error["cell"] is None else f"cell {error['cell']}"
    if error["execution_count"] is not None:
        where += f" (In [{error['execution_count']}])"
    message = (str(error["message"]).strip().splitlines() or [""])[0][:200]
    return f"{where}: {error['name']}: {message}".removeprefix(": ").replace("|", "\\|")


def _write_summary(out: Path, profile: str, params: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """Write ``summary.md`` and ``summary.json`` for the notebooks run so far; return the markdown."""
    failed = sum(r["status"] == "failed" for r in results)
    lines = [
        f"# cotlab run {out.name}",
        "",
        f"Profile `{profile}`, parameters `{params}`: {len(results)} notebook(s), {failed} failed, "
        f"{sum(r['minutes'] for r in results):.1f} min in all. Each notebook's executed copy, HTML page "
        "and folder of figures and metrics.json sit beside this file.",
        "",
        "| notebook | status | minutes | metrics | error |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['notebook']} | {STATUS_MARK[r['status']]} | {r['minutes']:.2f} | "
              f"{_headline(r['metrics'])} | {_failure(r['error'])} |" for r in results]
    markdown = "\n".join(lines) + "\n"
    atomic_write_text(out / "summary.md", markdown)
    atomic_write_json(out / "summary.json", {"run": out.name, "profile": profile, "parameters": params,
                                             "notebooks": results})
    return markdown
