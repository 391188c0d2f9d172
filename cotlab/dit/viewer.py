"""The flow viewer of notebook 04: one prompt sampled by the linear DiT, step by step from noise to image."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cotlab.errors import CotlabError
from cotlab.geneval import judge
from cotlab.metrics import to_uint8
from cotlab.sampling import sample
from cotlab.shapes import World
from cotlab.widgets import controls_over_figure, prompt_picker, shown_once


class FlowViewer:
    """Pick a prompt, a seed and a step of the sampler and see the latent it holds after that step
    (decoded as it is: part noise while σ > 0), the clean image it predicts there, x̂_0 = x_σ − σ·v,
    and the final image — each image judged against the prompt.

    ``model`` is a ``SanaDiT``; ``metas`` the prompts to choose from (GenEval metadata); ``solver``
    "euler" or "dpm". Samples are cached per (prompt, seed), so sliding over steps costs nothing.
    """

    def __init__(self, model, metas: list[dict], steps: int = 20, cfg: float = 3.0, solver: str = "euler",
                 world: World = World()):
        if not metas:
            raise CotlabError("FlowViewer needs prompts: pass GenEval metadata, e.g. benchmark_prompts()[:20]")
        self.model, self.metas, self.steps, self.cfg, self.solver, self.world = (
            model, list(metas), steps, cfg, solver, world)
        self.prompt, self.seed, self.step = 0, 0, steps
        self._sampled: dict[tuple[int, int], object] = {}

    def sample(self, prompt: int, seed: int):
        """The ``Samples`` (with every step) of prompt number ``prompt`` and ``seed``."""
        if not 0 <= prompt < len(self.metas):
            raise CotlabError(f"prompt {prompt} is out of range: choose 0 … {len(self.metas) - 1}")
        if (prompt, seed) not in self._sampled:
            self._sampled[prompt, seed] = sample(self.model, [self.metas[prompt]["prompt"]], seed, keep_steps=True,
                                                 steps=self.steps, cfg=self.cfg, solver=self.solver)
        return self._sampled[prompt, seed]

    def render(self, prompt: int | None = None, seed: int | None = None, step: int | None = None) -> Figure:
        """The three panels for ``prompt``, ``seed`` and ``step`` (1 … steps; default: the current ones).
        The figure is closed to pyplot (no duplicate inline display); save or display it."""
        prompt = self.prompt if prompt is None else prompt
        seed = self.seed if seed is None else seed
        step = self.step if step is None else step
        if not 1 <= step <= self.steps:
            raise CotlabError(f"step {step} is out of range: choose 1 … {self.steps}")
        result, meta = self.sample(prompt, seed), self.metas[prompt]
        record = result.steps[step - 1]
        sigma = float(record["sigma"][0])
        fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.6))
        panels = ((f"latent held after step {step} (σ = {sigma:.2f})", record["noisy"], False),
                  (f"predicted clean image x̂₀ at step {step}", record["image"], True),
                  ("final image", result.images, True))
        for ax, (title, image, judged) in zip(axes, panels):
            image = to_uint8(image[:1])[0]  # (H, W, 3)
            ax.imshow(image, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            if judged:
                correct, reason = judge(image, meta, self.world)
                ax.set_title(f"{title} {'✓' if correct else '✗'}", fontsize=9, color="tab:green" if correct else "tab:red")
                if not correct:
                    ax.set_xlabel(textwrap.fill(reason, 40), fontsize=7)
            else:
                ax.set_title(title, fontsize=9)
        return shown_once(fig, f"“{meta['prompt']}” — seed {seed}, {self.steps} {self.solver} steps, CFG {self.cfg:g}")

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
