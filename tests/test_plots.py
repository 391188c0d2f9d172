"""The figures, shared and topic-specific: each returns its Figure and, given ``save``, writes a PNG there."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from cotlab import plots
from cotlab.masked_ar.figures import passes_quality
from cotlab.tokenizers.figures import rate_quality


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")  # the functions leave their figures open for notebooks; tests must not leak them


def test_image_rows_draws_one_row_per_label_with_marks(tmp_path):
    rows = {"original": torch.rand(4, 3, 8, 8), "reconstruction": torch.rand(3, 3, 8, 8)}
    fig = plots.image_rows(rows, {"reconstruction": [True, False, True]}, save=tmp_path, name="rows")
    assert len(fig.axes) == 2 * 4 and (tmp_path / "rows.png").is_file()
    marks = [t.get_text() for ax in fig.axes[4:] for t in ax.texts]
    assert marks == ["✓", "✗", "✓"]
    assert fig.axes[0].get_ylabel() == "original"


def test_rate_quality_puts_each_tokenizer_on_four_panels(tmp_path):
    rows = [{"tokenizer": "a", "tokens_per_image": 16, "bits_per_image": 128, "psnr": 30.0, "agreement": 0.9},
            {"tokenizer": "b", "tokens_per_image": 64, "bits_per_image": 8192, "psnr": 38.0, "agreement": 1.0}]
    fig = rate_quality(rows, save=tmp_path)
    assert len(fig.axes) == 4 and (tmp_path / "rate_quality.png").is_file()
    for ax in fig.axes:
        assert [t.get_text() for t in ax.texts] == ["a", "b"] and ax.get_xscale() == "log"


def test_compare_curves_draws_a_line_per_run_and_skips_missing_keys(tmp_path):
    runs = {"one": {"loss": [(0, 1.0), (1, 0.5)]}, "two": {"loss": [(0, 2.0)], "acc": [(0, 0.1)]}}
    fig = plots.compare_curves(runs, ["loss", "acc"], marks=[1], save=tmp_path, name="cmp")
    loss, acc = fig.axes
    assert len(loss.get_lines()) == 2 + 1 and len(acc.get_lines()) == 1 + 1  # runs + the mark
    assert (tmp_path / "cmp.png").is_file()


def test_score_sweeps_and_passes_quality(tmp_path):
    summary = {"overall": 0.5, "tags": {"single_object": 0.9, "colors": 0.1}}
    fig = plots.score_sweeps({"steps": ([1, 2], [summary, summary]), "cfg": ([1, 3], [summary, summary])},
                             save=tmp_path, name="sweeps")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 7 and (tmp_path / "sweeps.png").exists()
    rows = [{"generator": "maskgit", "tokens": 16, "order": "masked", "steps": 8, "forward_passes": 16, "overall": 0.6},
            {"generator": "raster_ar", "tokens": 16, "order": "raster", "steps": 16, "forward_passes": 32, "overall": 0.62},
            {"generator": "maskgit_f4", "tokens": 64, "order": "masked", "steps": 8, "forward_passes": 16, "overall": 0.5}]
    fig = passes_quality(rows, save=tmp_path)
    assert len(fig.axes[0].lines) == 3 and len(fig.axes[0].get_legend().get_texts()) == 3
