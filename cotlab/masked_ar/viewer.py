"""The decoding viewer of notebook 02: MaskGIT decoding of one prompt, step by step."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cotlab.errors import CotlabError
from cotlab.geneval import judge
from cotlab.masked_ar.figures import MASK_COLORS, MASK_STATES, mask_states
from cotlab.metrics import to_uint8
from cotlab.sampling import sample
from cotlab.shapes import World
from cotlab.widgets import controls_over_figure, prompt_picker, shown_once


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
        """The ``Samples`` (with every step) of prompt number ``prompt`` and ``seed``."""
        if not 0 <= prompt < len(self.metas):
            raise CotlabError(f"prompt {prompt} is out of range: choose 0 … {len(self.metas) - 1}")
        if (prompt, seed) not in self._decoded:
            self._decoded[prompt, seed] = sample(self.model, [self.metas[prompt]["prompt"]], seed, keep_steps=True,
                                                 steps=self.steps, cfg=self.cfg)
        return self._decoded[prompt, seed]

    def render(self, prompt: int | None = None, seed: int | None = None, step: int | None = None) -> Figure:
        """The four panels for ``prompt``, ``seed`` and ``step`` (1 … steps; default: the current ones).
        The figure is closed to pyplot (no duplicate inline display); save or display it."""
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
        return shown_once(fig, f"“{meta['prompt']}” — seed {seed}, {self.steps} steps, CFG {self.cfg:g}; "
                               f"{int((state > 0).sum())} of {len(state)} tokens committed")

    def widget(self):
        """A prompt dropdown, a seed box and a step slider above the figure, redrawn on every change.
        The controls are kept as ``picker``, ``seed_box``, ``slider`` and ``output``."""
        import ipywidgets as W

        self.picker = prompt_picker(self.metas, self.prompt)
        self.seed_box = W.BoundedIntText(value=self.seed, min=0, max=10**6, description="seed")
        self.slider = W.IntSlider(value=self.step, min=1, max=self.steps, description="step")

        box, self.output = controls_over_figure(self, {"prompt": self.picker, "seed": self.seed_box,
                                                       "step": self.slider})
        return box
