"""Widgets: what every viewer shares (``controls_over_figure``, ``prompt_picker``), and the Shapes
world's scene composer (notebook 00).

Each viewer has ``render(...) -> Figure`` — headless and deterministic, what papermill runs and
tests check — and ``widget()``, the ipywidgets version for JupyterLab, which redraws that same
figure on every change. A notebook cell only constructs a viewer and shows one of the two. A topic's
viewers live in its house: ``cotlab.tokenizers.viewer.TokenViewer``,
``cotlab.masked_ar.viewer.DecodingViewer``, ``cotlab.verification.viewer.RewardViewer``.
"""
from __future__ import annotations

import html
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .errors import CotlabError
from .plots import finish
from .geneval import Detection, captions_of, detect, judge
from .shapes import COLORS, RELATIONS, SHAPES, TAGS, Obj, Scene, World, all_prompts

EMPTY = "—"
CHOICES = (EMPTY,) + tuple(f"{c} {s}" for s in SHAPES for c in COLORS)  # a cell's dropdown
PROMPTS = {m["prompt"]: m for tag in TAGS for m in all_prompts(tag)}  # the whole grammar, by text
GRAMMAR = ("the Shapes world's grammar is 'a photo of a [COLOUR] SHAPE', "
           "'a photo of a [COLOUR] SHAPE and a [COLOUR] SHAPE' (two different shapes), "
           "'a photo of two|three|four SHAPEs' and "
           f"'a photo of a SHAPE {'|'.join(RELATIONS)} a SHAPE' (no colours), "
           f"with SHAPE one of {', '.join(SHAPES)} and COLOUR one of {', '.join(COLORS)}")

DEFAULT_SCENE = Scene((Obj("triangle", "yellow", 0, 3), Obj("circle", "red", 1, 0),
                       Obj("square", "blue", 1, 2), Obj("triangle", "yellow", 3, 1)))
DEFAULT_PROMPTS = ("a photo of a circle left of a square", "a photo of a square left of a circle",
                   "a photo of two triangles", "a photo of three triangles",
                   "a photo of a red circle and a blue square",
                   "a photo of a blue circle and a red square", "a photo of a cross")
MAX_PROMPTS = 8  # the composer scores the last few prompts typed


def parse_prompt(text: str) -> dict:
    """GenEval metadata of a prompt of the world's grammar, found by its text (case and spacing
    aside); anything else raises a one-line error that states the grammar."""
    key = " ".join(text.lower().split())
    if key not in PROMPTS:
        raise CotlabError(f"{text.strip()!r} is not a prompt of this world: {GRAMMAR}")
    return PROMPTS[key]


def show_detections(ax, image: np.ndarray, detections: list[Detection], notes: list[str]) -> None:
    """Draw an (H, W, 3) image with one numbered box per detection; under it, what each number
    is (colour, shape, confidence) and the detector's notes on the blobs it rejected."""
    h, w = image.shape[:2]
    ax.imshow(image, extent=(0, w, h, 0), interpolation="nearest")  # pixel i spans [i, i + 1]
    for i, d in enumerate(detections, 1):
        x0, y0, x1, y1 = d.box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", lw=1))
        ax.text(x0, y0, str(i), color="white", fontsize=6, ha="left", va="top",
                bbox={"facecolor": "black", "edgecolor": "none", "pad": 0.5, "alpha": 0.7})
    # no-break spaces inside an item, so lines wrap only between items
    found = "; ".join(f"{i}\u00a0{d.color}\u00a0{d.shape}\u00a0{d.confidence:.2f}"
                      for i, d in enumerate(detections, 1)) or "nothing found"
    lines = textwrap.wrap(found, 44)
    lines += textwrap.wrap("rejected: " + "; ".join(notes), 44) if notes else []
    ax.set(xticks=[], yticks=[])
    ax.set_xlabel("\n".join(lines), fontsize=7)


def _draw_grid(ax, world: World) -> None:
    for k in range(1, world.grid):
        ax.axhline(k * world.cell, color="grey", lw=0.4, alpha=0.5)
        ax.axvline(k * world.cell, color="grey", lw=0.4, alpha=0.5)


def _write(ax, title: str, lines: list[tuple[str, dict]], width: int) -> None:
    """A text panel: a title, then lines (text, text style), wrapped at ``width`` characters."""
    ax.axis("off")
    ax.set_title(title, loc="left", fontsize=10)
    y = 0.0  # points below the top
    for text, style in lines:
        for part in textwrap.wrap(text, width, subsequent_indent="    "):
            ax.annotate(part, (0, 1), xycoords="axes fraction", xytext=(0, -y),
                        textcoords="offset points", va="top", fontsize=8, **style)
            y += 10.5


def _short(meta: dict) -> str:
    return meta["prompt"].removeprefix("a photo of ")


class SceneComposer:
    """Compose a scene cell by cell and see what the evaluator makes of it: the image, the
    detector's view, its true captions per GenEval tag, and the verdicts on a list of prompts."""

    def __init__(self, scene: Scene | None = None, prompts: list[dict] | None = None,
                 world: World = World()):
        self.world = world
        self.scene = DEFAULT_SCENE if scene is None else scene
        self.prompts = ([parse_prompt(t) for t in DEFAULT_PROMPTS] if prompts is None
                        else list(prompts))

    def set_cell(self, row: int, col: int, choice: str) -> None:
        """Put ``choice`` ("red circle", or "—" for nothing) in a cell, centred, no jitter."""
        objects = [o for o in self.scene.objects if (o.row, o.col) != (row, col)]
        if choice != EMPTY:
            color, shape = choice.split()
            objects.append(Obj(shape, color, row, col))
        self.scene = Scene(tuple(sorted(objects, key=lambda o: (o.row, o.col))), self.scene.grid)

    def add_prompt(self, text: str) -> dict:
        """Parse a prompt and put it first in the scored list (which keeps the last few)."""
        meta = parse_prompt(text)
        rest = [m for m in self.prompts if m["prompt"] != meta["prompt"]]
        self.prompts = [meta] + rest[:MAX_PROMPTS - 1]
        return meta

    def verdict(self, meta: dict, image: np.ndarray | None = None) -> str:
        """'✓ prompt' or '✗ prompt: reason', by ``geneval.judge`` on the (rendered) image."""
        image = self.world.render(self.scene) if image is None else image
        correct, reason = judge(image, meta, self.world)
        return f"✓ {meta['prompt']}" if correct else f"✗ {meta['prompt']}: {reason}"

    def render(self, scene: Scene | None = None) -> Figure:
        """Four panels: the scene, the detector's view, true captions per tag, prompt verdicts.
        The figure is closed to pyplot (no duplicate inline display); save or display it."""
        scene = self.scene if scene is None else scene
        image = self.world.render(scene)  # (H, W, 3) uint8
        detections, notes = detect(image, self.world)
        fig, (ax_img, ax_det, ax_cap, ax_ver) = plt.subplots(
            1, 4, figsize=(15, 4), gridspec_kw={"width_ratios": [1, 1, 1.5, 1.5]})

        h, w = image.shape[:2]
        ax_img.imshow(image, extent=(0, w, h, 0), interpolation="nearest")
        ax_img.set(xticks=[], yticks=[])
        ax_img.set_title(f"the scene: {len(scene.objects)} objects", fontsize=10)
        _draw_grid(ax_img, self.world)
        show_detections(ax_det, image, detections, notes)
        ax_det.set_title(f"the detector's view: {len(detections)} found", fontsize=10)

        captions = captions_of(scene, self.world)
        lines = []
        for tag in TAGS:
            mine = [m for m in captions if m["tag"] == tag]
            lines.append((f"{tag} ({len(mine)})", {"weight": "bold"}))
            shown = "; ".join(_short(m) for m in mine[:3]) + ("; …" if len(mine) > 3 else "")
            lines.append(("  " + (shown or "none"), {}))
        _write(ax_cap, f"true captions: {len(captions)} ('a photo of …')", lines, 64)

        verdicts = [self.verdict(m, image) for m in self.prompts]
        styles = [{"color": "tab:green" if v.startswith("✓") else "tab:red"} for v in verdicts]
        _write(ax_ver, "the prompts, judged on the image", list(zip(verdicts, styles)), 64)
        return shown_once(fig)

    def widget(self):
        """A grid of dropdowns (one per cell) and a prompt box above the figure, redrawn on every
        change. The controls are kept as ``cells`` (rows of dropdowns), ``prompt``, ``message``
        and ``output``."""
        import ipywidgets as W
        from IPython.display import display

        g = self.scene.grid
        at = {(o.row, o.col): f"{o.color} {o.shape}" for o in self.scene.objects}
        self.cells = [[W.Dropdown(options=CHOICES, value=at.get((r, c), EMPTY),
                                  layout=W.Layout(width="9.5em")) for c in range(g)]
                      for r in range(g)]
        self.prompt = W.Text(placeholder="a photo of a circle left of a square — press Enter",
                             continuous_update=False, layout=W.Layout(width="32em"))
        self.message = W.HTML()
        self.output = W.Output()

        def refresh():
            self.message.value = html.escape(self._message(self.prompt.value), quote=False)
            fig = self.render()
            self.output.clear_output(wait=True)
            with self.output:
                display(fig)

        def on_cell(r, c):
            def handler(change):
                self.set_cell(r, c, change["new"])
                refresh()
            return handler

        def on_prompt(change):
            try:
                self.add_prompt(change["new"])
            except CotlabError:
                pass  # the message explains
            refresh()

        for r in range(g):
            for c in range(g):
                self.cells[r][c].observe(on_cell(r, c), names="value")
        self.prompt.observe(on_prompt, names="value")
        refresh()
        grid = W.GridBox([d for row in self.cells for d in row],
                         layout=W.Layout(grid_template_columns=f"repeat({g}, 10em)"))
        return W.VBox([grid, W.HBox([W.Label("prompt:"), self.prompt]), self.message, self.output])

    def _message(self, text: str) -> str:
        if not text.strip():
            return ""
        try:
            return self.verdict(parse_prompt(text))
        except CotlabError as e:
            return str(e)


def prompt_picker(metas: list[dict], value: int):
    """A dropdown over prompts (GenEval metadata) whose value is the prompt's index."""
    import ipywidgets as W

    return W.Dropdown(options=[(m["prompt"], i) for i, m in enumerate(metas)], value=value, description="prompt",
                      layout=W.Layout(width="420px"))


def controls_over_figure(viewer, controls: dict) -> tuple:
    """A row of ipywidgets ``controls`` above an output that shows ``viewer.render()`` now and after
    every change, each control's value first copied into the viewer's attribute of the same name
    (``{"step": slider}`` sets ``viewer.step``): ``(box, output)``."""
    import ipywidgets as W
    from IPython.display import display

    output = W.Output()

    def refresh(change=None):
        for name, control in controls.items():
            setattr(viewer, name, control.value)
        fig = viewer.render()
        output.clear_output(wait=True)
        with output:
            display(fig)

    for control in controls.values():
        control.observe(refresh, names="value")
    refresh()
    row = W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap"))  # wrap, never squeeze a slider to nothing
    return W.VBox([row, output]), output


def judged_panel(ax, image: np.ndarray, title: str, meta: dict | None, world: World = World(), width: int = 40) -> None:
    """An image (H, W, 3) on ``ax`` with its title; given the prompt's ``meta``, judged against it: a
    green ✓ or a red ✗ in the title, and the reason for a ✗ below."""
    ax.imshow(image, interpolation="nearest")
    ax.set(xticks=[], yticks=[])
    if meta is None:
        ax.set_title(title, fontsize=9)
        return
    correct, reason = judge(image, meta, world)
    ax.set_title(f"{title} {'✓' if correct else '✗'}", fontsize=9, color="tab:green" if correct else "tab:red")
    if not correct:
        ax.set_xlabel(textwrap.fill(reason, width), fontsize=7)


def shown_once(fig: Figure, title: str | None = None) -> Figure:
    """A viewer's figure finished (its title, a tight layout) and closed to pyplot, so that it appears
    once, where it is displayed, not again inline."""
    plt.close(fig)
    return finish(fig, None, "", title)


class StepViewer:
    """What the step-by-step viewers share (notebook 02's decoding, notebook 04's flow): pick a prompt,
    a seed and a step of one sampling and see a figure. A subclass says how it samples one caption
    (``run(caption, seed)`` -> ``Samples`` with every step) and what it draws (``draw(result, meta,
    seed, step)``); samplings are cached per (prompt, seed), so sliding over steps costs nothing.
    ``widget()`` puts a prompt dropdown, a seed box and a step slider above the figure (kept as
    ``picker``, ``seed_box``, ``slider`` and ``output``)."""

    def __init__(self, metas: list[dict], steps: int):
        if not metas:
            raise CotlabError(f"{type(self).__name__} needs prompts: pass GenEval metadata, e.g. benchmark_prompts()[:20]")
        self.metas, self.steps = list(metas), steps
        self.prompt, self.seed, self.step = 0, 0, steps
        self._sampled: dict[tuple[int, int], object] = {}

    def run(self, caption: str, seed: int):
        """The ``Samples`` (with every step) of one caption."""
        raise NotImplementedError

    def draw(self, result, meta: dict, seed: int, step: int) -> Figure:
        """The figure of one sampling at ``step``."""
        raise NotImplementedError

    def sample(self, prompt: int, seed: int):
        """The cached ``Samples`` of prompt number ``prompt`` and ``seed``."""
        if not 0 <= prompt < len(self.metas):
            raise CotlabError(f"prompt {prompt} is out of range: choose 0 … {len(self.metas) - 1}")
        if (prompt, seed) not in self._sampled:
            self._sampled[prompt, seed] = self.run(self.metas[prompt]["prompt"], seed)
        return self._sampled[prompt, seed]

    def render(self, prompt: int | None = None, seed: int | None = None, step: int | None = None) -> Figure:
        """The figure for ``prompt``, ``seed`` and ``step`` (1 … steps; default: the current ones), closed
        to pyplot (no duplicate inline display); save or display it."""
        prompt = self.prompt if prompt is None else prompt
        seed = self.seed if seed is None else seed
        step = self.step if step is None else step
        if not 1 <= step <= self.steps:
            raise CotlabError(f"step {step} is out of range: choose 1 … {self.steps}")
        return self.draw(self.sample(prompt, seed), self.metas[prompt], seed, step)

    def widget(self):
        """The controls above the figure, redrawn on every change."""
        import ipywidgets as W

        self.picker = prompt_picker(self.metas, self.prompt)
        self.seed_box = W.BoundedIntText(value=self.seed, min=0, max=10**6, description="seed")
        self.slider = W.IntSlider(value=self.step, min=1, max=self.steps, description="step")
        box, self.output = controls_over_figure(self, {"prompt": self.picker, "seed": self.seed_box,
                                                       "step": self.slider})
        return box
