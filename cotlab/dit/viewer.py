"""The flow viewer of notebook 04: one prompt sampled by the linear DiT, step by step from noise to image."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cotlab.metrics import to_uint8
from cotlab.sampling import sample
from cotlab.shapes import World
from cotlab.widgets import StepViewer, judged_panel, shown_once


class FlowViewer(StepViewer):
    """Pick a prompt, a seed and a step of the sampler and see the latent it holds after that step
    (decoded as it is: part noise while σ > 0), the clean image it predicts there, x̂_0 = x_σ − σ·v,
    and the final image — each image judged against the prompt.

    ``model`` is a ``SanaDiT``; ``metas`` the prompts to choose from (GenEval metadata); ``solver``
    "euler" or "dpm"; the controls and the cache are ``StepViewer``'s.
    """

    def __init__(self, model, metas: list[dict], steps: int = 20, cfg: float = 4.5, solver: str = "euler",
                 world: World = World()):
        super().__init__(metas, steps)
        self.model, self.cfg, self.solver, self.world = model, cfg, solver, world

    def run(self, caption: str, seed: int):
        return sample(self.model, [caption], seed, keep_steps=True, steps=self.steps, cfg=self.cfg, solver=self.solver)

    def time_label(self, record: dict) -> str:
        """Where the sampler stands after a step: its noise level."""
        return f"σ = {float(record['sigma'][0]):.2f}"

    def settings(self) -> str:
        """How it samples, for the figure's title."""
        return f"{self.steps} {self.solver} steps, CFG {self.cfg:g}"

    def draw(self, result, meta: dict, seed: int, step: int) -> Figure:
        """The three panels at ``step``."""
        record = result.steps[step - 1]
        fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.6))
        panels = ((f"latent held after step {step} ({self.time_label(record)})", record["noisy"], False),
                  (f"predicted clean image x̂₀ at step {step}", record["image"], True),
                  ("final image", result.images, True))
        for ax, (title, image, judged) in zip(axes, panels):
            judged_panel(ax, to_uint8(image[:1])[0], title, meta if judged else None, self.world)
        return shown_once(fig, f"“{meta['prompt']}” — seed {seed}, {self.settings()}")
