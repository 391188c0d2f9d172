"""Every notebook runs end to end with papermill in the smoke profile (its own asserts must hold).

nbval (``make test``'s second step) then re-executes the committed notebooks and compares the cells
marked ``# NBVAL_CHECK_OUTPUT``.
"""
import json

import papermill as pm
import pytest

from cotlab.runner import list_notebooks

NOTEBOOKS = list_notebooks()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(notebook, tmp_path):
    run_dir = tmp_path / notebook.stem
    pm.execute_notebook(str(notebook), str(tmp_path / notebook.name),
                        parameters={"profile": "smoke", "run_dir": str(run_dir), "interactive": False},
                        cwd=str(notebook.parent), kernel_name="python3", progress_bar=False,
                        execution_timeout=600)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics, f"{notebook.name} wrote no metrics"
    assert list(run_dir.glob("*.png")), f"{notebook.name} saved no figures"
