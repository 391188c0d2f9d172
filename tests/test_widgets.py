"""Widgets: the scene composer's figure and controls (headless), and the detection overlay."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from cotlab.errors import CotlabError
from cotlab.geneval import captions_of, detect
from cotlab.shapes import Obj, Scene, World
from cotlab.widgets import DEFAULT_SCENE, EMPTY, SceneComposer, parse_prompt, show_detections


def texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_render_has_four_panels_and_is_deterministic():
    composer = SceneComposer()
    a, b = composer.render(), composer.render()
    assert len(a.axes) == 4
    assert texts(a) == texts(b)
    assert "✓ a photo of a circle left of a square" in texts(a)
    assert "✗ a photo of a square left of a circle: expected square left of" in texts(a)
    assert plt.get_fignums() == []  # closed to pyplot, so nothing leaks or shows twice
    for fig in (a, b):
        plt.close(fig)


def test_render_of_an_empty_scene():
    fig = SceneComposer().render(Scene(()))
    assert len(fig.axes) == 4
    assert "✗ a photo of two triangles: expected 2 triangle, found 0" in texts(fig)
    plt.close(fig)


def test_show_detections_draws_one_box_per_detection():
    image = World().render(DEFAULT_SCENE)
    detections, notes = detect(image)
    fig, ax = plt.subplots()
    show_detections(ax, image, detections, notes)
    assert sum(isinstance(p, Rectangle) for p in ax.patches) == len(detections) == 4
    assert "red circle" in ax.get_xlabel().replace("\u00a0", " ")
    plt.close(fig)


def test_parse_prompt_finds_the_grammar_and_names_it_otherwise():
    assert parse_prompt("A photo of  two circles")["tag"] == "counting"
    with pytest.raises(CotlabError, match="grammar") as e:
        parse_prompt("a photo of a red circle left of a blue square")
    assert "\n" not in str(e.value) and "a photo of a SHAPE left of" in str(e.value)


def test_set_cell_places_a_centred_object_and_clears_it():
    composer = SceneComposer(Scene(()))
    composer.set_cell(2, 1, "green cross")
    assert composer.scene.objects == (Obj("cross", "green", 2, 1),)
    composer.set_cell(2, 1, EMPTY)
    assert composer.scene.objects == ()


# --- the ipywidgets version, driven headless by setting values as ipywidgets' own tests do ----
@pytest.fixture
def composer():
    pytest.importorskip("ipywidgets")
    c = SceneComposer()
    c.widget()
    return c


def test_widget_mirrors_the_scene(composer):
    assert len(composer.cells) == 4 and all(len(row) == 4 for row in composer.cells)
    assert composer.cells[1][0].value == "red circle"
    assert composer.cells[0][0].value == EMPTY


def test_dropdown_updates_scene_captions_and_figure(composer, monkeypatch):
    renders = []
    render = composer.render
    monkeypatch.setattr(composer, "render", lambda: renders.append(1) or render())
    composer.cells[2][3].value = "purple cross"
    assert Obj("cross", "purple", 2, 3) in composer.scene.objects
    assert "a photo of a purple cross" in [m["prompt"] for m in captions_of(composer.scene)]
    composer.cells[1][0].value = EMPTY  # remove the red circle
    assert not any(o.shape == "circle" for o in composer.scene.objects)
    assert len(renders) == 2
    plt.close("all")


def test_typed_prompt_gets_its_verdict(composer):
    composer.prompt.value = "a photo of a circle left of a square"
    assert composer.message.value == "✓ a photo of a circle left of a square"
    assert composer.prompts[0]["prompt"] == "a photo of a circle left of a square"
    composer.prompt.value = "a photo of a cross above a square"
    assert composer.message.value.startswith(
        "✗ a photo of a cross above a square: expected 1 cross")
    composer.cells[0][2].value = "white cross"  # now it is true, and the message follows
    assert composer.message.value.startswith("✓")


def test_unknown_prompt_gets_one_line_naming_the_grammar(composer):
    before = list(composer.prompts)
    composer.prompt.value = "a photo of a red circle left of a blue square"
    message = composer.message.value
    assert "grammar" in message and "'a photo of a SHAPE left of" in message and "\n" not in message
    assert composer.prompts == before


def test_prompt_list_keeps_the_last_few():
    composer = SceneComposer()
    for number in ["two", "three", "four"]:
        for shape in ["circles", "squares", "triangles"]:
            composer.add_prompt(f"a photo of {number} {shape}")
    assert len(composer.prompts) == 8
    assert composer.prompts[0]["prompt"] == "a photo of four triangles"
    assert all(m["tag"] == "counting" for m in composer.prompts)


# --- the token viewer, on stand-in tokenizers ----------------------------------------------------
from tokenizer_standins import Blur, CellColours, HybridCells  # noqa: E402

from cotlab.tokenizers.viewer import PALETTE, TokenViewer  # noqa: E402


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


@pytest.fixture
def viewer():
    return TokenViewer({"cells": CellColours(), "hybrid": HybridCells(), "blur": Blur(2.0)}, n=8)


def test_token_viewer_shows_indices_usage_and_is_deterministic(viewer):
    a, b = viewer.render(3, "cells"), viewer.render(3, "cells")
    assert titles(a) == titles(b) == ["original ✓", titles(a)[1], "codebook indices (4×4 of 8 codes)",
                                      titles(a)[3]]
    codes = viewer.tokens("cells")["indices"][3].tolist()
    assert [t.get_text() for t in a.axes[2].texts] == [str(c) for c in codes]  # the numbers drawn in
    assert titles(a)[3].startswith("usage ") and "perplexity" in titles(a)[3]
    assert sum(p.get_height() for p in a.axes[3].patches) == 8 * 16  # every token of the batch
    assert "cells: 16 tokens, 48 bits per image — image 3" in a._suptitle.get_text()
    assert plt.get_fignums() == []
    for fig in (a, b):
        plt.close(fig)


def test_token_viewer_shows_both_paths_and_the_residual_of_a_hybrid(viewer):
    fig = viewer.render(0, "hybrid")
    assert [t.split()[0] for t in titles(fig)] == ["original", "discrete", "discrete+residual",
                                                   "codebook", "usage", "residual"]
    assert titles(fig)[2] == "discrete+residual ✓"  # the stand-in's residual is exact
    residual = viewer.tokens("hybrid")["residual"]
    assert residual.shape == (8, 4, 4) and (residual >= 0).all()
    assert len(fig.axes[5].texts) == 16
    plt.close(fig)


def test_token_viewer_of_a_continuous_tokenizer_shows_images_only(viewer):
    fig = viewer.render(0, "blur")
    assert [t.split()[0] for t in titles(fig)] == ["original", "reconstruction"]
    plt.close(fig)


def test_token_viewer_keeps_one_size_and_colours_codes_as_categories(viewer):
    figures = [viewer.render(0, name) for name in ("cells", "hybrid", "blur")]
    assert len({tuple(fig.get_size_inches()) for fig in figures}) == 1  # the text reads the same for each
    codes = viewer.tokens("cells")["indices"][0].numpy()  # (16,)
    shown = figures[0].axes[2].get_images()[0].get_array()  # (4, 4, 3): each cell's colour
    assert np.allclose(shown.reshape(-1, 3), PALETTE[codes % len(PALETTE)])  # by id, not on a scale
    for fig in figures:
        plt.close(fig)


def test_token_viewer_names_the_fix_on_bad_input(viewer):
    with pytest.raises(CotlabError, match="unknown tokenizer 'vq': choose one of cells, hybrid, blur"):
        viewer.render(0, "vq")
    with pytest.raises(CotlabError, match="image 8 is out of range: choose 0 … 7"):
        viewer.render(8)
    with pytest.raises(CotlabError, match="pass \\{name: model\\}"):
        TokenViewer({})


def test_token_viewer_widget_follows_its_controls(viewer, monkeypatch):
    pytest.importorskip("ipywidgets")
    viewer.widget()
    shown = []
    render = viewer.render
    monkeypatch.setattr(viewer, "render", lambda: shown.append((viewer.index, viewer.name)) or render())
    viewer.picker.value = 5
    viewer.choice.value = "hybrid"
    assert shown == [(5, "cells"), (5, "hybrid")]
    assert viewer.picker.max == 7
    plt.close("all")
