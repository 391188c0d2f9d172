"""The next-X viewer of notebook 03: one prompt sampled entity by entity, and flow step by flow step
inside an entity."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cotlab.errors import CotlabError
from cotlab.metrics import to_uint8
from cotlab.sampling import sample
from cotlab.shapes import World
from cotlab.xar.decoding import SOLVER_NAMES
from cotlab.widgets import StepViewer, controls_over_figure, judged_panel, prompt_picker, shown_once


class XARViewer(StepViewer):
    """Pick a prompt, a seed, an AR step (the entity) and a flow step inside it, and see the image the
    context makes before that entity, the entity's predicted clean value x̂₀ = x_σ − σ·v at that flow
    step (pasted into the context), the image after the entity, and the final image — the last three
    judged against the prompt.

    ``model`` is an ``XAR``; ``steps`` its flow steps per entity; the prompt, seed and entity controls
    and the cache are ``StepViewer``'s, plus a ``flow_slider``."""

    def __init__(self, model, metas: list[dict], steps: int = 20, cfg: float = 5.0, solver: str = "sde",
                 world: World = World()):
        super().__init__(metas, model.layout.entities)
        self.model, self.flow_steps, self.cfg, self.solver, self.world = model, steps, cfg, solver, world
        self.flow_step = steps

    def run(self, caption: str, seed: int):
        return sample(self.model, [caption], seed, keep_steps=True, steps=self.flow_steps, cfg=self.cfg,
                      solver=self.solver)

    def render(self, prompt: int | None = None, seed: int | None = None, step: int | None = None,
               flow_step: int | None = None) -> Figure:
        """The figure at ``step`` (the entity, 1 … N) and ``flow_step`` (1 … S); default: the current ones."""
        if flow_step is not None:
            self.flow_step = flow_step
        if not 1 <= self.flow_step <= self.flow_steps:
            raise CotlabError(f"flow step {self.flow_step} is out of range: choose 1 … {self.flow_steps}")
        return super().render(prompt, seed, step)

    def draw(self, result, meta: dict, seed: int, step: int) -> Figure:
        record = result.steps[step - 1]
        before = result.steps[step - 2]["image"] if step > 1 else None
        context = {1: "context: none yet", 2: "context: entity 1"}.get(step, f"context: entities 1 … {step - 1}")
        panels = ((context, before, False),
                  (f"entity {step}, flow step {self.flow_step}: x̂₀", record["flow"][0, self.flow_step - 1:self.flow_step],
                   True),
                  (f"after entity {step} of {self.steps}", record["image"], True),
                  ("final image", result.images, True))
        fig, axes = plt.subplots(1, 4, figsize=(11.5, 3.5))
        for ax, (title, image, judged) in zip(axes, panels):
            if image is None:
                ax.set(xticks=[], yticks=[], title=title)
                ax.title.set_fontsize(9)
            else:
                judged_panel(ax, to_uint8(image[:1])[0], title, meta if judged else None, self.world, width=36)
        entity = self.model.config.entity
        return shown_once(fig, f"“{meta['prompt']}” — seed {seed}; next-{entity} prediction, {self.flow_steps} "
                               f"{SOLVER_NAMES[self.solver]} steps per entity, CFG ramped to {self.cfg:g}")

    def widget(self):
        """Prompt, seed, entity and flow-step controls above the figure."""
        import ipywidgets as W

        self.picker = prompt_picker(self.metas, self.prompt)
        self.seed_box = W.BoundedIntText(value=self.seed, min=0, max=10**6, description="seed")
        self.slider = W.IntSlider(value=self.step, min=1, max=self.steps, description="entity")
        self.flow_slider = W.IntSlider(value=self.flow_step, min=1, max=self.flow_steps, description="flow step")
        box, self.output = controls_over_figure(self, {"prompt": self.picker, "seed": self.seed_box,
                                                       "step": self.slider, "flow_step": self.flow_slider})
        return box
