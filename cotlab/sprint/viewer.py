"""The consistency viewer of notebook 05: one prompt drawn by the distilled student, jump by jump."""
from __future__ import annotations

from cotlab.dit.viewer import FlowViewer
from cotlab.sampling import sample
from cotlab.shapes import World


class SprintViewer(FlowViewer):
    """Pick a prompt, a seed and a step of the student's sampling and see the latent it holds after
    that step (the one-step image re-noised to the next time θ, decoded as it is), the one-step image
    x̂_0 it predicted there, and the final image — each image judged against the prompt.

    ``model`` is a ``SprintStudent``; ``steps`` 1, 2 or 4 (SANA-Sprint's times; others uniform);
    ``cfg`` the distilled guidance the embedding is given."""

    def __init__(self, model, metas: list[dict], steps: int = 4, cfg: float = 4.5, world: World = World()):
        super().__init__(model, metas, steps, cfg, solver="consistency", world=world)

    def run(self, caption: str, seed: int):
        return sample(self.model, [caption], seed, keep_steps=True, steps=self.steps, cfg=self.cfg)

    def time_label(self, record: dict) -> str:
        return f"θ = {float(record['theta'][0]):.2f}"

    def settings(self) -> str:
        return f"{self.steps} consistency steps, distilled CFG {self.cfg:g}"
