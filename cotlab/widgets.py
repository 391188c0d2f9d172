"""Widgets: interactive views of the Shapes world.

Each widget has ``render(...) -> Figure`` — headless and deterministic, what papermill runs and
tests check — and ``widget()``, the ipywidgets version for JupyterLab, which redraws that same
figure on every change. A notebook cell only constructs a widget and shows one of the two.
"""
from __future__ import annotations

import html
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .errors import CotlabError
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
        fig.tight_layout()
        plt.close(fig)
        return fig

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


def controls_over_figure(controls: list, follow, render):
    """A row of ipywidgets ``controls`` above an output that shows ``render()`` — after ``follow()``
    has copied the controls' values into the viewer — now and on every change: ``(box, output)``."""
    import ipywidgets as W
    from IPython.display import display

    output = W.Output()

    def refresh(change=None):
        follow()
        fig = render()
        output.clear_output(wait=True)
        with output:
            display(fig)

    for control in controls:
        control.observe(refresh, names="value")
    refresh()
    return W.VBox([W.HBox(controls), output]), output


class TokenViewer:
    """Pick an image and a tokenizer and see its tokens: the original beside the reconstruction(s)
    (both paths of a hybrid), each judged against the image's prompt; the codebook indices as a map
    over the token grid; how often each code is used over the whole batch; and for a hybrid the
    magnitude |Z_r| of the continuous residual at each position.

    ``tokenizers`` maps names to models with the ``cotlab.tokenizers`` interface; the images are a
    fixed batch of ``n`` scenes drawn with ``seed``. A hybrid (``reconstruct(images, residual)``)
    encodes to ``(indices, Z_r)``, Z_r of shape (B, C, h, w).
    """

    def __init__(self, tokenizers: dict, n: int = 32, seed: int = 0, world: World = World()):
        from .shapes import make_batch

        if not tokenizers:
            raise CotlabError("TokenViewer needs tokenizers: pass {name: model}, "
                              "e.g. {'vq_f8': load_checkpoint('vq_f8')}")
        self.tokenizers, self.world = dict(tokenizers), world
        batch = make_batch(world, np.random.default_rng(seed), n)
        self.images, self.metas = batch["image"], batch["meta"]  # (n, 3, H, W), prompts
        self.index, self.name = 0, next(iter(self.tokenizers))
        self._tokens: dict[str, dict] = {}

    def tokens(self, name: str) -> dict:
        """What tokenizer ``name`` makes of the whole batch (computed once): ``reconstructions``
        {variant: (n, 3, H, W)}, ``indices`` (n, N) or None, ``residual`` |Z_r| (n, h, w) or None."""
        import torch

        from .tokenizers import metrics

        if name not in self.tokenizers:
            raise CotlabError(f"unknown tokenizer {name!r}: choose one of {', '.join(self.tokenizers)}")
        if name not in self._tokens:
            model = self.tokenizers[name]
            device = metrics.device_of(model)
            with torch.no_grad():
                x = self.images.to(device)
                variants = metrics.variants(model)
                self._tokens[name] = {
                    "reconstructions": {label: metrics.reconstruct(model, self.images, **options)
                                        for label, options in variants.items()},
                    "indices": model.encode_indices(x).cpu() if hasattr(model, "encode_indices") else None,
                    "residual": (model.encode(x)[1].norm(dim=1).cpu()  # (n, h, w): |Z_r| per position
                                 if "discrete+residual" in variants else None),
                }
        return self._tokens[name]

    def render(self, index: int | None = None, name: str | None = None) -> Figure:
        """The panels for image ``index`` and tokenizer ``name`` (default: the current ones).
        The figure is closed to pyplot (no duplicate inline display); save or display it."""
        from .tokenizers import metrics

        index = self.index if index is None else index
        name = self.name if name is None else name
        if not 0 <= index < len(self.images):
            raise CotlabError(f"image {index} is out of range: choose 0 … {len(self.images) - 1}")
        tokens, model = self.tokens(name), self.tokenizers[name]
        meta = self.metas[index]
        shown = {"original": self.images[index]}
        shown.update({label or "reconstruction": r[index] for label, r in tokens["reconstructions"].items()})
        panels = len(shown) + (2 if tokens["indices"] is not None else 0) + (tokens["residual"] is not None)
        fig, axes = plt.subplots(1, panels, figsize=(2.9 * panels, 3.4), squeeze=False)
        axes = list(axes[0])

        for ax, (label, image) in zip(axes, shown.items()):
            image = metrics.to_uint8(image[None])[0]  # (H, W, 3)
            correct, _ = judge(image, meta, self.world)
            ax.imshow(image, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"{label} {'✓' if correct else '✗'}", fontsize=10,
                         color="tab:green" if correct else "tab:red")
        axes = axes[len(shown):]

        if tokens["indices"] is not None:
            K = model.codebook_size
            idx = tokens["indices"][index]  # (N,)
            g = int(round(len(idx) ** 0.5))
            ax = axes.pop(0)
            ax.imshow(idx.reshape(g, g).numpy(), cmap="viridis", vmin=0, vmax=K - 1)
            for k, code in enumerate(idx.tolist()):
                ax.text(k % g, k // g, str(code), ha="center", va="center", color="white",
                        fontsize=10 if g <= 4 else 6,
                        bbox={"facecolor": "black", "edgecolor": "none", "pad": 0.3, "alpha": 0.4})
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"codebook indices ({g}×{g} of {K} codes)", fontsize=10)

            ax = axes.pop(0)
            counts = np.bincount(tokens["indices"].flatten().numpy(), minlength=K)  # (K,)
            usage, perplexity = metrics.codebook_stats(tokens["indices"], K)
            mine = np.zeros(K, bool)
            mine[idx.numpy()] = True
            ax.bar(np.arange(K), counts, width=1.0, color=np.where(mine, "tab:orange", "tab:blue"))
            ax.set_xlim(-0.5, K - 0.5)
            ax.set_xlabel("code (orange: in this image)", fontsize=8)
            ax.set_ylabel(f"uses in {len(self.images)} images", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_title(f"usage {usage:.0%}, perplexity {perplexity:.1f}", fontsize=10)

        if tokens["residual"] is not None:
            ax = axes.pop(0)
            r = tokens["residual"][index]  # (h, w)
            ax.imshow(r.numpy(), cmap="magma", vmin=0, vmax=float(tokens["residual"].max()) or 1.0)
            if r.shape[0] <= 8:
                for (i, j), value in np.ndenumerate(r.numpy()):
                    ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="white",
                            fontsize=9 if r.shape[0] <= 4 else 6,
                            bbox={"facecolor": "black", "edgecolor": "none", "pad": 0.3, "alpha": 0.4})
            ax.set(xticks=[], yticks=[])
            ax.set_title("residual |Z_r| per position", fontsize=10)

        fig.suptitle(f"{name}: {model.tokens_per_image} tokens, {model.bits_per_image:.0f} bits per image"
                     f" — image {index}: “{meta['prompt']}”", fontsize=10)
        fig.tight_layout()
        plt.close(fig)
        return fig

    def widget(self):
        """A slider for the image and a dropdown for the tokenizer above the figure, redrawn on
        every change. The controls are kept as ``picker``, ``choice`` and ``output``."""
        import ipywidgets as W

        self.picker = W.IntSlider(value=self.index, min=0, max=len(self.images) - 1, description="image")
        self.choice = W.Dropdown(options=list(self.tokenizers), value=self.name, description="tokenizer")

        def follow():
            self.index, self.name = self.picker.value, self.choice.value

        box, self.output = controls_over_figure([self.picker, self.choice], follow, lambda: self.render())
        return box


class DecodingViewer:
    """Pick a prompt, a seed and a decoding step of a MaskGIT generator and see the token grid after
    that step (masked, committed earlier, committed at this step, with the codebook index of every
    committed token), the tokens sampled at that step, the intermediate image they decode to, and
    the final image — each image judged against the prompt.

    ``model`` is a masked ``MaskedAR``; ``metas`` the prompts to choose from (GenEval metadata).
    Decodings are cached per (prompt, seed), so sliding over steps costs nothing.
    """

    def __init__(self, model, metas: list[dict], steps: int = 8, cfg: float = 3.0, world: World = World()):
        if model.config.order != "masked":
            raise CotlabError("DecodingViewer shows MaskGIT decoding: pass a masked generator, e.g. "
                              "load_checkpoint('maskgit')")
        if not metas:
            raise CotlabError("DecodingViewer needs prompts: pass GenEval metadata, e.g. benchmark_prompts()[:20]")
        self.model, self.metas, self.steps, self.cfg, self.world = model, list(metas), steps, cfg, world
        self.prompt, self.seed, self.step = 0, 0, steps
        self._decoded: dict[tuple[int, int], object] = {}

    def decode(self, prompt: int, seed: int):
        """The ``DecodeResult`` (with every step) of prompt number ``prompt`` and ``seed``."""
        from .masked_ar.decoding import maskgit_decode

        if not 0 <= prompt < len(self.metas):
            raise CotlabError(f"prompt {prompt} is out of range: choose 0 … {len(self.metas) - 1}")
        if (prompt, seed) not in self._decoded:
            self._decoded[prompt, seed] = maskgit_decode(self.model, [self.metas[prompt]["prompt"]], self.steps,
                                                         self.cfg, seed=seed, keep_steps=True)
        return self._decoded[prompt, seed]

    def render(self, prompt: int | None = None, seed: int | None = None, step: int | None = None) -> Figure:
        """The four panels for ``prompt``, ``seed`` and ``step`` (1 … steps; default: the current ones).
        The figure is closed to pyplot (no duplicate inline display); save or display it."""
        from matplotlib.colors import ListedColormap

        from .plots import MASK_COLORS, MASK_STATES, mask_states
        from .tokenizers.metrics import to_uint8

        prompt = self.prompt if prompt is None else prompt
        seed = self.seed if seed is None else seed
        step = self.step if step is None else step
        if not 1 <= step <= self.steps:
            raise CotlabError(f"step {step} is out of range: choose 1 … {self.steps}")
        result, meta = self.decode(prompt, seed), self.metas[prompt]
        state = mask_states(result.steps)[step - 1]  # (N,)
        sampled = result.steps[step - 1]["sampled"][0].numpy()  # (N,)
        g = int(round(len(state) ** 0.5))
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))

        for ax, title, shown in ((axes[0], f"tokens after step {step}", state > 0),
                                 (axes[1], f"sampled at step {step}", np.ones_like(state, bool))):
            ax.imshow(state.reshape(g, g), cmap=ListedColormap(MASK_COLORS), vmin=0, vmax=2)
            for k in np.flatnonzero(shown):
                ax.text(k % g, k // g, str(sampled[k]), ha="center", va="center", fontsize=10 if g <= 4 else 6,
                        color="black" if state[k] else "white")
            ax.set(xticks=[], yticks=[])
            ax.set_title(title, fontsize=10)
        axes[0].legend(handles=[Rectangle((0, 0), 1, 1, color=c, label=s) for c, s in zip(MASK_COLORS, MASK_STATES)],
                       fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, frameon=False)

        for ax, title, image in ((axes[2], f"intermediate image, step {step}", result.steps[step - 1]["image"]),
                                 (axes[3], "final image", result.images)):
            image = to_uint8(image[:1])[0]  # (H, W, 3)
            correct, reason = judge(image, meta, self.world)
            ax.imshow(image, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"{title} {'✓' if correct else '✗'}", fontsize=10,
                         color="tab:green" if correct else "tab:red")
            if not correct:
                ax.set_xlabel(textwrap.fill(reason, 40), fontsize=7)
        fig.suptitle(f"“{meta['prompt']}” — seed {seed}, {self.steps} steps, CFG {self.cfg:g}; "
                     f"{int((state > 0).sum())} of {len(state)} tokens committed", fontsize=10)
        fig.tight_layout()
        plt.close(fig)
        return fig

    def widget(self):
        """A prompt dropdown, a seed box and a step slider above the figure, redrawn on every change.
        The controls are kept as ``picker``, ``seed_box``, ``slider`` and ``output``."""
        import ipywidgets as W

        self.picker = prompt_picker(self.metas, self.prompt)
        self.seed_box = W.BoundedIntText(value=self.seed, min=0, max=10**6, description="seed")
        self.slider = W.IntSlider(value=self.step, min=1, max=self.steps, description="step")

        def follow():
            self.prompt, self.seed, self.step = self.picker.value, self.seed_box.value, self.slider.value

        box, self.output = controls_over_figure([self.picker, self.seed_box, self.slider], follow,
                                                lambda: self.render())
        return box


class RewardViewer:
    """The per-step reward viewer of notebook 06: pick a prompt, a candidate path and a decoding step,
    and see that step's image with what every verifier says of it — CLIPScore, the PRM, PARM's
    clarity and potential — the score curves of every candidate over the steps (where PARM pruned a
    path, and at which step it turned clear), the finals with the ORM's and PARM's yes and the exact
    verdict, and PARM++'s reflection rounds on PARM's choice, with the re-masked cells outlined.

    ``verifiers``: the loaded ``clip``, ``orm``, ``prm`` and ``parm``. Paths use the seeds of
    ``cotlab bench verification`` (sample 0), so the viewer shows the benchmark's own candidates.
    """

    def __init__(self, model, verifiers: dict, metas: list[dict], candidates: int = 8, steps: int = 8,
                 cfg: float = 3.0, seed: int = 0, world: World = World()):
        if model.config.order != "masked":
            raise CotlabError("RewardViewer follows MaskGIT decoding paths: pass a masked generator, e.g. maskgit")
        if not metas:
            raise CotlabError("RewardViewer needs prompts: pass GenEval metadata, e.g. stratified_prompts(16)")
        missing = sorted({"clip", "orm", "prm", "parm"} - set(verifiers))
        if missing:
            raise CotlabError(f"RewardViewer needs the verifiers {missing}: load them with load_checkpoint(name)")
        self.model, self.verifiers, self.metas = model, verifiers, list(metas)
        self.candidates, self.steps, self.cfg, self.seed, self.world = candidates, steps, cfg, seed, world
        self.prompt, self.candidate, self.step = 0, 0, steps
        self._traces: dict[int, dict] = {}

    def trace(self, prompt: int) -> dict:
        """Everything the figure shows for one prompt, computed once: per candidate and step the
        image (C, T, 3, H, W) and scores (C, T) — clip, prm, clear, potential, verdict —, the finals'
        orm, parm_yes and verdict (C,), PARM's search trace and PARM++'s rounds."""
        import torch

        from .masked_ar.decoding import Paths, path_seed
        from .tokenizers.metrics import to_uint8
        from .verification import search
        from .verification.metrics import clip_probability

        if not 0 <= prompt < len(self.metas):
            raise CotlabError(f"prompt {prompt} is out of range: choose 0 … {len(self.metas) - 1}")
        if prompt in self._traces:
            return self._traces[prompt]
        meta, v = self.metas[prompt], self.verifiers
        caption, C, T = meta["prompt"], self.candidates, self.steps
        seeds = [path_seed(self.seed, prompt, 0, c) for c in range(C)]
        paths, images = Paths(self.model, [caption] * C, T, self.cfg, seeds), []
        while not bool(paths.done().all()):
            paths.advance()
            images.append(paths.images())
        images = torch.stack(images, 1)  # (C, T, 3, H, W)
        flat, captions = images.reshape(C * T, *images.shape[2:]), [caption] * (C * T)
        progress = torch.arange(1, T + 1).repeat(C) / T  # (C·T,)
        judged = v["parm"].judge(flat, captions, progress)
        finals = paths.images(sampled=False)  # (C, 3, H, W)
        out = {"images": images, "finals": finals,
               "clip": clip_probability(v["clip"], flat, captions).reshape(C, T),
               "prm": v["prm"].judge(flat, captions, progress)["yes"].reshape(C, T),
               "clear": judged["clear"].reshape(C, T), "potential": judged["potential"].reshape(C, T),
               "verdict": torch.tensor([judge(x, meta, self.world)[0] for x in to_uint8(flat)]).reshape(C, T),
               "orm": v["orm"].judge(finals, [caption] * C)["yes"],
               "parm_yes": v["parm"].judge(finals, [caption] * C)["yes"],
               "final_verdict": [judge(x, meta, self.world) for x in to_uint8(finals)]}
        out["parm++"] = search.parm_plus_plus(self.model, caption, seeds, v["parm"], T, self.cfg)
        self._traces[prompt] = out
        return out

    def render(self, prompt: int | None = None, candidate: int | None = None, step: int | None = None) -> Figure:
        """The figure for ``prompt``, ``candidate`` (0 … candidates − 1) and ``step`` (1 … steps)."""
        from .tokenizers.metrics import to_uint8

        prompt = self.prompt if prompt is None else prompt
        candidate = self.candidate if candidate is None else candidate
        step = self.step if step is None else step
        if not 0 <= candidate < self.candidates:
            raise CotlabError(f"candidate {candidate} is out of range: choose 0 … {self.candidates - 1}")
        if not 1 <= step <= self.steps:
            raise CotlabError(f"step {step} is out of range: choose 1 … {self.steps}")
        tr, meta = self.trace(prompt), self.metas[prompt]
        parm = tr["parm++"].trace
        rounds = parm["rounds"]
        fig = plt.figure(figsize=(13, 6.2))
        grid = fig.add_gridspec(2, 4 + max(len(rounds), 1), height_ratios=[1.25, 1])
        c, t = candidate, step - 1

        ax = fig.add_subplot(grid[0, 0])  # the chosen step image and its scores
        ok = bool(tr["verdict"][c, t])
        ax.imshow(to_uint8(tr["images"][c, t][None])[0], interpolation="nearest")
        ax.set(xticks=[], yticks=[])
        ax.set_title(f"path {c}, step {step} {'✓' if ok else '✗'}", fontsize=10, color="tab:green" if ok else "tab:red")
        pruned = bool(parm["pruned"][c])
        ax.set_xlabel(f"CLIPScore {tr['clip'][c, t]:.2f}\nPRM {tr['prm'][c, t]:.2f}\n"
                      f"PARM clear {tr['clear'][c, t]:.2f}, potential {tr['potential'][c, t]:.2f}\n"
                      + (f"pruned at step {parm['clear_at'][c]}" if pruned else "kept by PARM"), fontsize=8)

        for k, (key, title) in enumerate((("prm", "PRM yes"), ("potential", "PARM potential"),
                                          ("clear", "PARM clarity"))):
            ax = fig.add_subplot(grid[0, 1 + k])
            x = np.arange(1, self.steps + 1)
            for i in range(self.candidates):
                end = parm["clear_at"][i] if parm["pruned"][i] else self.steps
                final_ok = tr["final_verdict"][i][0]
                style = dict(color="tab:green" if final_ok else "tab:red", lw=2.2 if i == c else 0.9,
                             alpha=1 if i == c else 0.55)
                ax.plot(x[:end], tr[key][i, :end], **style)
                if end < self.steps:
                    ax.plot(x[end - 1:], tr[key][i, end - 1:], ls=":", **{**style, "alpha": 0.3})
                    ax.plot(end, tr[key][i, end - 1], "x", color="black", ms=5)
            ax.axvline(step, color="0.6", lw=0.8)
            ax.set(ylim=(-0.03, 1.03), xlabel="step", title=title)
            ax.title.set_fontsize(10)
        fig.axes[1].set_ylabel("green: path ends correct, red: wrong\n×: PARM pruned it (dotted: not run)", fontsize=7)

        finals = fig.add_subplot(grid[1, :4])  # every final with ORM / PARM yes
        strip = np.concatenate([np.pad(to_uint8(f[None])[0], ((2, 2), (2, 2), (0, 0))) for f in tr["finals"]], 1)
        finals.imshow(strip, interpolation="nearest")
        finals.set(xticks=[(tr["finals"].shape[-1] + 4) * (i + 0.5) for i in range(self.candidates)], yticks=[])
        finals.set_xticklabels([f"{'✓' if tr['final_verdict'][i][0] else '✗'} ORM {tr['orm'][i]:.2f}\nPARM {tr['parm_yes'][i]:.2f}"
                                + ("\n(pruned)" if parm["pruned"][i] else "") for i in range(self.candidates)], fontsize=7)
        finals.set_title(f"every candidate's final; PARM chose path {tr['parm++'].chosen}", fontsize=10)

        for k, r in enumerate(rounds or [None]):  # PARM++'s reflection rounds
            ax = fig.add_subplot(grid[:, 4 + k])
            ax.set(xticks=[], yticks=[])
            if r is None:
                ax.set_title("PARM++: PARM said yes,\nno reflection", fontsize=9)
                ax.imshow(to_uint8(tr["parm++"].image[None])[0], interpolation="nearest")
                continue
            ax.imshow(to_uint8(r["image"][None])[0], interpolation="nearest")
            g, cell = int(round(len(r["redo"]) ** 0.5)), r["image"].shape[-1] / int(round(len(r["redo"]) ** 0.5))
            for idx in np.flatnonzero(r["redo"].numpy()):
                ax.add_patch(Rectangle(((idx % g) * cell - 0.5, (idx // g) * cell - 0.5), cell, cell, fill=False,
                                       ec="white", lw=1.2, ls="--"))
            ax.set_title(f"round {k + 1}: {r['kind']}\n(yes {r['yes']:.2f})", fontsize=9)
        final_ok = judge(to_uint8(tr["parm++"].image[None])[0], meta, self.world)[0]
        fig.suptitle(f"“{meta['prompt']}” — {self.candidates} candidates, {self.steps} steps; PARM++ ends "
                     f"{'✓' if final_ok else '✗'} after {len(rounds)} reflection round(s)", fontsize=11)
        fig.tight_layout()
        plt.close(fig)
        return fig

    def widget(self):
        """A prompt dropdown and candidate and step sliders above the figure, redrawn on every change."""
        import ipywidgets as W

        self.picker = prompt_picker(self.metas, self.prompt)
        self.path_slider = W.IntSlider(value=self.candidate, min=0, max=self.candidates - 1, description="candidate")
        self.slider = W.IntSlider(value=self.step, min=1, max=self.steps, description="step")

        def follow():
            self.prompt, self.candidate, self.step = self.picker.value, self.path_slider.value, self.slider.value

        box, self.output = controls_over_figure([self.picker, self.path_slider, self.slider], follow,
                                                lambda: self.render())
        return box
