"""cotlab run: notebooks executed with papermill into a new run folder, with a summary."""

import json
import os
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cotlab.errors import CotlabError
from cotlab.runner import parse_value, run_notebooks


def write_notebook(path, *cells):
    """A notebook whose first code cell holds the parameters."""
    nb = new_notebook(cells=[new_markdown_cell(f"# {path.stem}"),
                             new_code_cell('profile = "cpu"\nrun_dir = None\nextra = 1',
                                           metadata={"tags": ["parameters"]}),
                             *[new_code_cell(source) for source in cells]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "00_good.ipynb",
                   "import os, json, pathlib\nassert os.environ['COTLAB_PROFILE'] == profile",
                   "out = pathlib.Path(run_dir)\nout.mkdir(parents=True, exist_ok=True)\n"
                   "(out / 'metrics.json').write_text(json.dumps("
                   "{'overall': 0.625, 'extra': extra, 'per_task': {'counting': 0.5}}))")
    write_notebook(folder / "01_bad.ipynb", "x = 1", "raise ValueError('the shapes are wrong')")
    return folder


def test_run_records_success_and_failure(notebooks, tmp_path):
    out = run_notebooks("smoke", params={"extra": 3}, notebooks_dir=notebooks, out_root=tmp_path / "runs")
    assert out.parent == tmp_path / "runs" and out.name.endswith("-smoke")
    for name in ("00_good", "01_bad"):
        assert (out / f"{name}.ipynb").exists() and (out / f"{name}.html").exists()

    summary = (out / "summary.md").read_text()
    good, bad = [line for line in summary.splitlines() if line.startswith("| 0")]
    assert "| ✓ |" in good and "overall 0.625" in good and "extra 3" in good and "counting" not in good
    assert "| ✗ |" in bad and "ValueError: the shapes are wrong" in bad and "cell 4" in bad

    results = json.loads((out / "summary.json").read_text())["notebooks"]
    assert [r["status"] for r in results] == ["ok", "failed"]
    assert results[0]["metrics"]["per_task"] == {"counting": 0.5}
    assert results[1]["error"]["cell"] == 4 and results[1]["error"]["name"] == "ValueError"

    again = run_notebooks("smoke", only=["00"], notebooks_dir=notebooks, out_root=tmp_path / "runs")
    assert again != out and (out / "summary.md").read_text() == summary
    assert [r["notebook"] for r in json.loads((again / "summary.json").read_text())["notebooks"]] == ["00_good"]


def test_stop_on_error_skips_the_rest(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "00_bad.ipynb", "1 / 0")
    write_notebook(folder / "01_never.ipynb", "pass")
    out = run_notebooks("smoke", stop_on_error=True, notebooks_dir=folder, out_root=tmp_path / "runs")
    results = json.loads((out / "summary.json").read_text())["notebooks"]
    assert [r["status"] for r in results] == ["failed", "skipped"]
    assert not (out / "01_never.ipynb").exists()


def test_bad_selection_names_the_choices(notebooks, tmp_path):
    with pytest.raises(CotlabError, match=r"no notebook numbered 07: choose from 00, 01"):
        run_notebooks("smoke", only=["07"], notebooks_dir=notebooks, out_root=tmp_path / "runs")
    with pytest.raises(CotlabError, match="--profile"):
        run_notebooks("smoke", params={"profile": "gpu"}, notebooks_dir=notebooks, out_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_parse_value_like_papermill():
    assert [parse_value(v) for v in ("True", "False", "None", "3", "-2", "0.5", "1e-3", "cpu", "true")] == \
        [True, False, None, 3, -2, 0.5, 1e-3, "cpu", "true"]


@pytest.mark.slow  # 15 s: a cotlab process and two notebook kernels
def test_cli_runs_the_chosen_notebooks_with_parameters_and_exits_1_naming_the_failure(notebooks, tmp_path):
    """``cotlab run --only 00,01 -p extra 3`` on the folder $COTLAB_NOTEBOOKS names: exit status 1, the
    failure on one line, the good notebook's outputs kept with the parameter it was given."""
    write_notebook(notebooks / "02_unchosen.ipynb", "pass")
    runs = tmp_path / "runs"
    env = {**os.environ, "COTLAB_NOTEBOOKS": str(notebooks), "COTLAB_RUNS": str(runs)}
    done = subprocess.run([sys.executable, "-m", "cotlab.cli", "run", "--profile", "smoke", "--only", "00,01",
                           "-p", "extra", "3"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    named = [line for line in done.stdout.splitlines() if "ValueError: the shapes are wrong" in line]
    assert named and all(line.strip().startswith(("✗", "| 01_bad |")) for line in named), done.stdout
    (out,) = runs.iterdir()
    results = json.loads((out / "summary.json").read_text())
    assert [(r["notebook"], r["status"]) for r in results["notebooks"]] == [("00_good", "ok"), ("01_bad", "failed")]
    assert results["parameters"] == {"extra": 3}
    assert json.loads((out / "00_good" / "metrics.json").read_text())["extra"] == 3
    assert (out / "00_good.ipynb").is_file() and (out / "00_good.html").is_file()
    assert not (out / "02_unchosen.ipynb").exists()
