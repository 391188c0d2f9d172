"""Widgets: the scene composer's figure and controls (headless), and the detection overlay."""

import matplotlib.pyplot as plt
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
