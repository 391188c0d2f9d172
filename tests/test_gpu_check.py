"""``make gpu-check``: it refuses without CUDA, and its CPU path trains, samples and fills the table."""

import torch

from cotlab import gpu_check


def table_rows(out: str) -> dict[str, dict[str, str]]:
    """The printed Markdown table as ``{model: {column: cell}}``."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    return {row["model"]: row for row in rows}


def test_without_cuda_it_refuses_in_one_line_naming_the_cpu_path(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA" in err and "--device cpu --profile smoke" in err


def test_unknown_model_is_refused(capsys):
    assert gpu_check.main(["--device", "cpu", "--only", "maskgti"]) == 2
    assert "maskgti" in capsys.readouterr().err


def test_cpu_smoke_run_measures_training_and_generation(capsys):
    assert gpu_check.main(["--device", "cpu", "--profile", "smoke", "--steps", "2", "--only", "clip,maskgit"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {"clip", "maskgit"}
    for row in rows.values():
        assert row["result"] == "ok"
        assert float(row["train steps/s"]) > 0 and float(row["train rows/s"]) > 0
    assert float(rows["maskgit"]["generate images/s"]) > 0
    assert rows["clip"]["generate images/s"] == "—"  # a text encoder, not a generator


def test_a_failing_model_is_reported_and_the_rest_still_run(monkeypatch, capsys):
    def train_rates(name, *args):
        if name == "clip":
            raise RuntimeError("CUDA out of memory.\nTried to allocate …")
        return 2.0, 64.0, "32-true"

    monkeypatch.setattr(gpu_check, "train_rates", train_rates)
    assert gpu_check.main(["--device", "cpu", "--profile", "smoke", "--only", "clip,shapes_classifier"]) == 1
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows["clip"]["result"] == "failed — train: CUDA out of memory."
    assert rows["shapes_classifier"]["result"] == "ok" and float(rows["shapes_classifier"]["train steps/s"]) == 2.0
    assert "failed: clip" in out
