"""The workbook's figure conventions: one colour per strategy and model, intervals drawn where a score has
one, legends outside the data, readable axis labels, and labels and titles that do not overprint."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import is_color_like, to_rgba
from matplotlib.container import BarContainer
from matplotlib.text import Text

from cotlab import plots
from cotlab.masked_ar.figures import passes_quality
from cotlab.shapes import TAGS
from cotlab.tokenizers.figures import rate_quality
from cotlab.verification.figures import clarity, cost, scaling_curves, verifier_quality
from cotlab.verification.viewer import outline_cells

STRATEGIES = ("baseline", "clip", "orm", "clip-prm", "prm", "parm", "parm++", "oracle")
GENERATORS = ("maskgit", "raster_ar", "maskgit_f4", "raster_ar_f4", "maskgit_hybrid", "dcar_head")
TOKENIZERS = ("vq_f8", "vq_f4", "vq_f8_plain", "dcae_f8", "dcae_f4", "dcae_f8_noshortcut", "hybrid_f8",
              "hybrid_f8_alternating")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def boxes(fig, artists):
    fig.canvas.draw()
    return [a.get_window_extent() for a in artists]


def overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def legend_outside(ax) -> bool:
    legend, = boxes(ax.figure, [ax.get_legend()])
    return not overlap(legend, ax.get_window_extent())


def no_overlap(fig, texts) -> bool:
    fig.canvas.draw()
    found = [Text.get_window_extent(t) for t in texts if t.get_text()]  # the text alone, not an annotation's line
    return not any(overlap(a, b) for i, a in enumerate(found) for b in found[i + 1:])


def summary(overall, interval=True):
    s = {"overall": overall, "tags": {t: overall for t in TAGS}}
    if interval:
        s["interval"] = {"overall": [overall - 0.05, overall + 0.05], **{t: [overall - 0.1, overall + 0.1]
                                                                          for t in TAGS}}
    return s


# --- colours ------------------------------------------------------------------------------------
def test_each_strategy_and_model_keeps_one_distinct_colour():
    for family in (STRATEGIES, GENERATORS, TOKENIZERS):
        colours = [plots.color(name) for name in family]
        assert len(set(colours)) == len(family), family  # told apart within a figure
        assert colours == [plots.color(name) for name in family]  # the same every time
    assert plots.color("hybrid_f8 (discrete)") == plots.color("hybrid_f8")  # a note keeps the model's colour
    assert plots.color("maskgit (16 tokens)") == plots.color("maskgit")
    assert is_color_like(plots.color("anything")) and plots.color("anything") == plots.color("anything")
    assert len({plots.color(n) for n in ("model card", "this run", "shipped")}) == 3  # notebooks 00 and 02


def test_logged_keys_read_as_words():
    assert plots.quantity("train_loss") == "training loss" and plots.quantity("train_yes_acc") == "accuracy of yes"
    assert plots.quantity("train_masked_share") == "train masked share"


# --- shared figures -------------------------------------------------------------------------------
def test_curves_label_their_axes_in_words():
    history = {"train_loss": [(0, 1.0), (1, 0.5)], "train_yes_acc": [(0, 0.5), (1, 0.9)]}
    fig = plots.curves(history)
    assert [ax.get_ylabel() for ax in fig.axes] == ["training loss", "accuracy of yes"]
    assert all(ax.get_title() == "" for ax in fig.axes)  # no raw key as a title
    runs = {"orm": history, "prm": {"train_loss": [(0, 2.0)]}}
    fig = plots.compare_curves(runs, ["train_loss", "train_yes_acc"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["training loss", "accuracy of yes"]
    assert [line.get_color() for line in fig.axes[0].lines] == [plots.color("orm"), plots.color("prm")]
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["orm", "prm"]
    assert legend_outside(fig.axes[-1])


@pytest.mark.parametrize("with_intervals", [False, True])
def test_task_bars_colour_each_series_and_draw_its_intervals(with_intervals):
    scores = {k: {t: 0.5 for t in TAGS} for k in STRATEGIES}
    intervals = {k: {t: (0.4, 0.6) for t in TAGS} for k in STRATEGIES} if with_intervals else None
    fig = plots.task_bars(scores, labels={"parm": "PARM"}, intervals=intervals, title="per task")
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [c.patches[0].get_facecolor() for c in bars] == [to_rgba(plots.color(k)) for k in STRATEGIES]
    assert all((c.errorbar is not None) == with_intervals for c in bars)
    assert "PARM" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend_outside(ax) and ax.get_ylabel() == "GenEval score"


def test_task_bars_draw_a_partial_interval_only_where_given():
    scores = {"a": {"x": 0.5, "y": 0.7}, "b": {"x": 0.2, "y": 0.3}}
    fig = plots.task_bars(scores, intervals={"a": {"x": (0.4, 0.6)}})
    a, b = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    assert a.errorbar is not None and b.errorbar is None


@pytest.mark.parametrize("with_intervals", [False, True])
def test_score_sweeps_band_the_overall_interval(with_intervals):
    summaries = [summary(v, with_intervals) for v in (0.4, 0.6, 0.7)]
    fig = plots.score_sweeps({"steps": ([1, 2, 4], summaries), "cfg": ([1, 2, 3], summaries)})
    assert all(len(ax.collections) == int(with_intervals) for ax in fig.axes)  # the band
    assert legend_outside(fig.axes[-1])


def test_image_grid_rows_grow_with_their_titles_and_titles_clear_the_images():
    images = torch.rand(8, 3, 8, 8)
    short = plots.image_grid(images, ["a circle"] * 8, ncols=4, size=2.4)
    long = plots.image_grid(images, ["a photo of a blue cross and a white triangle\n✗ expected 1 triangle, "
                                     "found 0 because it was too small to see"] * 8, ncols=4, size=2.4)
    assert long.get_size_inches()[1] > short.get_size_inches()[1]
    lines = long.axes[0].get_title().count("\n") + 1
    assert lines >= 3
    titles = [ax.title for ax in long.axes[4:]]  # the second row's titles …
    for title, above in zip(boxes(long, titles), boxes(long, long.axes[:4])):  # … clear the first row
        assert not overlap(title, above)


# --- topic figures --------------------------------------------------------------------------------
@pytest.mark.parametrize("with_intervals", [False, True])
def test_scaling_curves_show_points_and_intervals(with_intervals):
    curves = {k: {1: 0.6, 4: 0.7, 20: 0.75} for k in ("clip", "orm", "parm", "oracle")}
    curves["prm"] = {"1": 0.6, "20": 0.7}  # as read back from JSON
    intervals = None
    if with_intervals:
        intervals = {k: {n: (v - 0.05, v + 0.05) for n, v in c.items()} for k, c in curves.items()}
        intervals["parm++"] = {20: (0.73, 0.83)}
    labels = {k: k.upper() for k in STRATEGIES}
    fig = scaling_curves(curves, labels, intervals=intervals, points={"parm++": (20, 0.78)})
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["CLIP", "ORM", "PRM", "PARM", "PARM++", "ORACLE"]  # in the order of the labels
    assert ax.containers[legend.index("PARM++")].lines[0].get_xydata().shape == (1, 2)  # one marker
    assert all((c.has_yerr and bool(c.lines[2])) == with_intervals for c in ax.containers)
    assert ax.containers[legend.index("PARM")].lines[0].get_color() == plots.color("parm")
    assert legend_outside(ax)


@pytest.mark.parametrize("with_intervals", [False, True])
def test_verifier_quality_draws_both_kinds_with_error_bars(with_intervals, tmp_path):
    q = {"precision": 0.9, "recall": 0.8, "auroc": 0.95}
    if with_intervals:
        q["interval"] = {"precision": [0.85, 0.95], "recall": [0.7, 0.9], "auroc": [0.9, 0.99]}
    quality = {"CLIPScore (zero-shot)": {"final": q, "step": q}, "ORM": {"final": q}, "PARM": {"final": q, "step": q}}
    fig = verifier_quality(quality, save=tmp_path)
    final, step = fig.axes
    assert len(final.patches) == 3 * 3 and len(step.patches) == 2 * 3
    assert all((c.errorbar is not None) == with_intervals for c in final.containers if isinstance(c, BarContainer))
    assert legend_outside(step) and (tmp_path / "verifier_quality.png").is_file()


def test_cost_writes_every_strategy_once_without_overprinting(tmp_path):
    table = {k: {"passes": p, "calls": c} for k, p, c in zip(STRATEGIES, (16, 320, 320, 16, 16, 259, 266, 320),
                                                             (0, 20, 20, 160, 160, 73, 74, 20))}
    labels = {"baseline": "baseline (one sample)", "clip": "ORM zero-shot (CLIPScore)",
              "clip-prm": "PRM zero-shot (CLIPScore)"}
    fig = cost(table, [[1, 8, 8], [3, 8, 2]], labels, save=tmp_path)
    passes, calls, steps = fig.axes
    assert [t.get_text() for t in passes.get_yticklabels()][0] == "baseline (one sample)"
    assert [p.get_facecolor() for p in passes.patches] == [to_rgba(plots.color(k)) for k in STRATEGIES]
    assert [t.get_text().strip() for t in passes.texts] == ["16", "320", "320", "16", "16", "259", "266", "320"]
    for ax in fig.axes:
        assert no_overlap(fig, ax.get_xticklabels()) and no_overlap(fig, ax.get_yticklabels())
    assert sum(p.get_height() for p in steps.patches) == 6 and (tmp_path / "cost.png").is_file()


def test_rate_quality_joins_the_pairs_and_labels_every_point_apart():
    rows = [{"tokenizer": name, "checkpoint": name.split(" (")[0], "tokens_per_image": tokens, "bits_per_image": bits,
             "psnr": psnr, "agreement": agreement}
            for name, tokens, bits, psnr, agreement in [
                ("vq_f8", 16, 128, 34.6, 0.988), ("vq_f4", 64, 512, 36.7, 0.992), ("vq_f8_plain", 16, 128, 29.0, 0.574),
                ("dcae_f8", 16, 8192, 38.5, 1.0), ("dcae_f4", 64, 8192, 38.1, 0.998),
                ("dcae_f8_noshortcut", 16, 8192, 24.9, 0.188), ("hybrid_f8 (discrete)", 16, 128, 33.5, 0.966),
                ("hybrid_f8 (discrete+residual)", 16, 8320, 36.0, 0.994),
                ("hybrid_f8_alternating (discrete)", 16, 128, 30.4, 0.72),
                ("hybrid_f8_alternating (discrete+residual)", 16, 8320, 34.5, 0.986)]]
    fig = rate_quality(rows)
    for ax in fig.axes:
        assert sorted(t.get_text() for t in ax.texts) == sorted(r["tokenizer"] for r in rows)
        assert no_overlap(fig, ax.texts)
        assert [line.get_color() for line in ax.lines] == [plots.color("vq_f8"), plots.color("dcae_f8")]  # the curves
        assert len(ax.patches) == 2  # an arrow per hybrid: discrete → discrete + residual


def test_passes_quality_colours_generators_and_keeps_its_legend_outside():
    rows = [{"generator": g, "tokens": n, "order": o, "steps": 8, "forward_passes": p, "overall": v,
             "interval": {"overall": [v - 0.05, v + 0.05]}}
            for g, n, o, p, v in [("maskgit", 16, "masked", 16, 0.6), ("raster_ar", 16, "raster", 32, 0.7),
                                  ("maskgit_f4", 64, "masked", 16, 0.5)]]
    rows.append({**rows[0], "steps": 4, "forward_passes": 8})
    del rows[-1]["interval"]
    fig = passes_quality(rows)
    ax = fig.axes[0]
    assert [c.lines[0].get_color() for c in ax.containers] == [plots.color(r["generator"]) for r in rows]
    assert [c.has_yerr for c in ax.containers] == [True, True, True, False]
    assert len(ax.get_legend().get_texts()) == 3 and legend_outside(ax)


def test_clarity_colours_each_generator_and_keeps_one_legend_outside():
    T, paths = 4, 3
    steps = {"step": torch.arange(1, T + 1).repeat(paths), "clear": torch.ones(paths * T),
             "potential": torch.rand(paths * T), "final": torch.tensor([True, False, True]).repeat_interleave(T)}
    fig = clarity({"maskgit (16 tokens)": steps, "maskgit_f4 (64 tokens)": steps})
    left, right = fig.axes
    assert [line.get_color() for line in left.lines] == [plots.color("maskgit"), plots.color("maskgit_f4")]
    assert left.get_legend() is None and legend_outside(right)


# --- the reward viewer's re-masked cells ----------------------------------------------------------
@pytest.mark.parametrize("redo, borders", [([5], 4), ([5, 6], 6), (list(range(16)), 16)])
def test_outline_cells_tints_the_remasked_cells_and_outlines_only_their_region(redo, borders):
    cells = np.zeros(16, bool)
    cells[redo] = True
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((32, 32, 3)))
    outline_cells(ax, cells, 32)
    assert len(ax.patches) == len(redo)  # one tint per re-masked cell
    assert len(ax.lines) == borders  # the region's border: no edge between two re-masked cells
