"""cotlab run: notebooks executed with papermill into a new run folder, with a summary."""

import json

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
