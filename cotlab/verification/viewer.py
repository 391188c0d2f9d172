"""The per-step reward viewer of notebook 06: what every verifier says of every step of every candidate."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cotlab.errors import CotlabError
from cotlab.geneval import judge
from cotlab.metrics import to_uint8
from cotlab.sampling import path_seed
from cotlab.shapes import World
from cotlab.verification import search
from cotlab.verification.metrics import clip_probability
from cotlab.widgets import controls_over_figure, prompt_picker, shown_once


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
        if not callable(getattr(model, "paths", None)):
            raise CotlabError("RewardViewer follows a generator's decoding paths: pass one, e.g. load_checkpoint('maskgit')")
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
        if not 0 <= prompt < len(self.metas):
            raise CotlabError(f"prompt {prompt} is out of range: choose 0 … {len(self.metas) - 1}")
        if prompt in self._traces:
            return self._traces[prompt]
        meta, v = self.metas[prompt], self.verifiers
        caption, C, T = meta["prompt"], self.candidates, self.steps
        seeds = [path_seed(self.seed, prompt, 0, c) for c in range(C)]
        paths, images = self.model.paths([caption] * C, seeds, steps=T, cfg=self.cfg), []
        while not bool(paths.done().all()):
            paths.advance()
            images.append(paths.images())
        images = torch.stack(images, 1)  # (C, T, 3, H, W)
        flat, captions = images.reshape(C * T, *images.shape[2:]), [caption] * (C * T)
        progress = torch.arange(1, T + 1).repeat(C) / T  # (C·T,)
        judged = v["parm"].judge(flat, captions, progress)
        finals = paths.images(final=True)  # (C, 3, H, W)
        out = {"images": images, "finals": finals,
               "clip": clip_probability(v["clip"], flat, captions).reshape(C, T),
               "prm": v["prm"].judge(flat, captions, progress)["yes"].reshape(C, T),
               "clear": judged["clear"].reshape(C, T), "potential": judged["potential"].reshape(C, T),
               "verdict": torch.tensor([judge(x, meta, self.world)[0] for x in to_uint8(flat)]).reshape(C, T),
               "orm": v["orm"].judge(finals, [caption] * C)["yes"],
               "parm_yes": v["parm"].judge(finals, [caption] * C)["yes"],
               "final_verdict": [judge(x, meta, self.world) for x in to_uint8(finals)]}
        out["parm++"] = search.parm_plus_plus(self.model, caption, seeds, v["parm"], steps=T, cfg=self.cfg)
        self._traces[prompt] = out
        return out

    def render(self, prompt: int | None = None, candidate: int | None = None, step: int | None = None) -> Figure:
        """The figure for ``prompt``, ``candidate`` (0 … candidates − 1) and ``step`` (1 … steps)."""
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
        return shown_once(fig, f"“{meta['prompt']}” — {self.candidates} candidates, {self.steps} steps; PARM++ "
                               f"ends {'✓' if final_ok else '✗'} after {len(rounds)} reflection round(s)")

    def widget(self):
        """A prompt dropdown and candidate and step sliders above the figure, redrawn on every change."""
        import ipywidgets as W

        self.picker = prompt_picker(self.metas, self.prompt)
        self.path_slider = W.IntSlider(value=self.candidate, min=0, max=self.candidates - 1, description="candidate")
        self.slider = W.IntSlider(value=self.step, min=1, max=self.steps, description="step")

        box, self.output = controls_over_figure(self, {"prompt": self.picker, "candidate": self.path_slider,
                                                       "step": self.slider})
        return box
