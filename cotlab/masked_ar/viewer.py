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
from cotlab.widgets import StepViewer, shown_once


class DecodingViewer(StepViewer):
    """Pick a prompt, a seed and a decoding step of a MaskGIT generator and see the token grid after
    that step (masked, committed earlier, committed at this step, with the codebook index of every
    committed token), the tokens sampled at that step, the intermediate image they decode to, and
    the final image — each image judged against the prompt.

    ``model`` is a masked ``MaskedAR``; ``metas`` the prompts to choose from (GenEval metadata); the
    controls and the cache are ``StepViewer``'s.
    """

    def __init__(self, model, metas: list[dict], steps: int = 8, cfg: float = 3.0, world: World = World()):
        if model.config.order != "masked":
            raise CotlabError("DecodingViewer shows MaskGIT decoding: pass a masked generator, e.g. "
                              "load_checkpoint('maskgit')")
        super().__init__(metas, steps)
        self.model, self.cfg, self.world = model, cfg, world

    def run(self, caption: str, seed: int):
        return sample(self.model, [caption], seed, keep_steps=True, steps=self.steps, cfg=self.cfg)

    def draw(self, result, meta: dict, seed: int, step: int) -> Figure:
        """The four panels at ``step``."""
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
