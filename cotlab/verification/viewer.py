"""The per-step reward viewer of notebook 06: what every verifier says of every step of every candidate."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from cotlab.errors import CotlabError
from cotlab.geneval import judge
from cotlab.metrics import to_uint8
from cotlab.plots import legend_outside
from cotlab.sampling import path_seed
from cotlab.shapes import World
from cotlab.verification import search
from cotlab.verification.metrics import clip_probability
from cotlab.widgets import controls_over_figure, prompt_picker, shown_once

REMASKED = "#00e5ff"  # the re-masked cells' outline: bright on the Shapes world's dark background


def outline_cells(ax, cells: np.ndarray, size: int) -> None:
    """Tint the grid cells ``cells`` (cells,) bool of a ``size``-pixel image drawn on ``ax`` and outline
    their region: only its border, so that a cell outside it stands out."""
    g = int(round(len(cells) ** 0.5))
    inside = cells.reshape(g, g)
    step = size / g
    for i, j in zip(*np.nonzero(inside)):
        x0, y0 = j * step - 0.5, i * step - 0.5  # pixel k spans [k − 0.5, k + 0.5]
        ax.add_patch(Rectangle((x0, y0), step, step, fc=REMASKED, alpha=0.18, lw=0))
        for di, dj, (xa, ya, xb, yb) in ((-1, 0, (0, 0, 1, 0)), (1, 0, (0, 1, 1, 1)),
                                         (0, -1, (0, 0, 0, 1)), (0, 1, (1, 0, 1, 1))):
            if not (0 <= i + di < g and 0 <= j + dj < g and inside[i + di, j + dj]):
                ax.plot([x0 + xa * step, x0 + xb * step], [y0 + ya * step, y0 + yb * step], color=REMASKED, lw=1.6)


class RewardViewer:
    """The per-step reward viewer of notebook 06: pick a prompt, a candidate path and a decoding step,
    and see that step's image with what every verifier says of it — CLIPScore, the PRM, PARM's
    clarity and potential —, the score curves of every candidate over the steps (where PARM pruned a
    path), every candidate's final with the ORM's and PARM's yes and the exact verdict, and PARM++'s
    reflection rounds on PARM's choice, the re-masked cells outlined.

    ``verifiers``: the loaded ``clip``, ``orm``, ``prm`` and ``parm``. Paths use the seeds of
    ``cotlab bench verification`` (sample 0), so the viewer shows the benchmark's own candidates. It
    opens on the first prompt whose candidates end some right and some wrong (``first_mixed``).
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
        self._decoded: dict[int, dict] = {}
        self._traces: dict[int, dict] = {}
        self.prompt, self.candidate, self.step = self.first_mixed(), 0, steps

    def decode(self, prompt: int) -> dict:
        """The candidates of one prompt, decoded once: every step's image (C, T, 3, H, W), the
        ``finals`` (C, 3, H, W) and their ``final_verdict`` [(correct, reason)] by the exact evaluator."""
        if not 0 <= prompt < len(self.metas):
            raise CotlabError(f"prompt {prompt} is out of range: choose 0 … {len(self.metas) - 1}")
        if prompt not in self._decoded:
            meta, C = self.metas[prompt], self.candidates
            seeds = [path_seed(self.seed, prompt, 0, c) for c in range(C)]
            paths, images = self.model.paths([meta["prompt"]] * C, seeds, steps=self.steps, cfg=self.cfg), []
            while not bool(paths.done().all()):
                paths.advance()
                images.append(paths.images())
            finals = paths.images(final=True)  # (C, 3, H, W)
            self._decoded[prompt] = {"seeds": seeds, "images": torch.stack(images, 1), "finals": finals,
                                     "final_verdict": [judge(x, meta, self.world) for x in to_uint8(finals)]}
        return self._decoded[prompt]

    def first_mixed(self) -> int:
        """The first prompt whose candidates end some right and some wrong — where the verifiers have
        something to tell apart — found by decoding prompt after prompt (no verifier); 0 if none is."""
        for prompt in range(len(self.metas)):
            if len({ok for ok, _ in self.decode(prompt)["final_verdict"]}) == 2:
                return prompt
        return 0

    def trace(self, prompt: int) -> dict:
        """Everything the figure shows for one prompt, computed once: ``decode``'s images, finals and
        verdicts; per candidate and step the scores (C, T) — clip, prm, clear, potential, verdict —;
        the finals' orm and parm_yes (C,); PARM's search trace and PARM++'s rounds."""
        if prompt in self._traces:
            return self._traces[prompt]
        out, meta, v = dict(self.decode(prompt)), self.metas[prompt], self.verifiers
        caption, C, T = meta["prompt"], self.candidates, self.steps
        flat, captions = out["images"].reshape(C * T, *out["images"].shape[2:]), [caption] * (C * T)
        progress = torch.arange(1, T + 1).repeat(C) / T  # (C·T,)
        judged = v["parm"].judge(flat, captions, progress)
        out.update({"clip": clip_probability(v["clip"], flat, captions).reshape(C, T),
                    "prm": v["prm"].judge(flat, captions, progress)["yes"].reshape(C, T),
                    "clear": judged["clear"].reshape(C, T), "potential": judged["potential"].reshape(C, T),
                    "verdict": torch.tensor([judge(x, meta, self.world)[0] for x in to_uint8(flat)]).reshape(C, T),
                    "orm": v["orm"].judge(out["finals"], [caption] * C)["yes"],
                    "parm_yes": v["parm"].judge(out["finals"], [caption] * C)["yes"]})
        out["parm++"] = search.parm_plus_plus(self.model, caption, out["seeds"], v["parm"], steps=T, cfg=self.cfg)
        self._traces[prompt] = out
        return out

    def render(self, prompt: int | None = None, candidate: int | None = None, step: int | None = None) -> Figure:
        """The figure for ``prompt``, ``candidate`` (0 … candidates − 1) and ``step`` (1 … steps):
        above, the step image and the score curves; below, every candidate's final, then PARM++."""
        prompt = self.prompt if prompt is None else prompt
        candidate = self.candidate if candidate is None else candidate
        step = self.step if step is None else step
        if not 0 <= candidate < self.candidates:
            raise CotlabError(f"candidate {candidate} is out of range: choose 0 … {self.candidates - 1}")
        if not 1 <= step <= self.steps:
            raise CotlabError(f"step {step} is out of range: choose 1 … {self.steps}")
        tr, meta = self.trace(prompt), self.metas[prompt]
        parm, rounds = tr["parm++"].trace, tr["parm++"].trace["rounds"]
        C, c, t = self.candidates, candidate, step - 1
        fig = plt.figure(figsize=(12, 6.2), layout="constrained")
        grid = fig.add_gridspec(2, 1, height_ratios=[1.5, 1])
        top = grid[0].subgridspec(1, 4)

        ax = fig.add_subplot(top[0])  # the chosen step image and its scores
        ok = bool(tr["verdict"][c, t])
        ax.imshow(to_uint8(tr["images"][c, t][None])[0], interpolation="nearest")
        ax.set(xticks=[], yticks=[])
        ax.set_title(f"path {c}, step {step} {'✓' if ok else '✗'}", fontsize=10,
                     color="tab:green" if ok else "tab:red")
        ax.set_xlabel(f"CLIPScore {tr['clip'][c, t]:.2f}   PRM {tr['prm'][c, t]:.2f}\n"
                      f"PARM clear {tr['clear'][c, t]:.2f}, potential {tr['potential'][c, t]:.2f}\n"
                      + (f"PARM pruned it at step {parm['clear_at'][c]}" if parm["pruned"][c] else "PARM kept it"),
                      fontsize=8)

        x = np.arange(1, self.steps + 1)
        for k, (key, title, ylabel) in enumerate((("prm", "PRM yes", "P(yes)"),
                                                  ("potential", "PARM potential", "P̂(correct)"),
                                                  ("clear", "PARM clarity", "P(clear)"))):
            ax = fig.add_subplot(top[1 + k])
            for i in range(C):
                end = parm["clear_at"][i] if parm["pruned"][i] else self.steps
                style = dict(color="tab:green" if tr["final_verdict"][i][0] else "tab:red",
                             lw=2.4 if i == c else 0.9, alpha=1 if i == c else 0.5)
                ax.plot(x[:end], tr[key][i, :end], **style)
                if end < self.steps:
                    ax.plot(x[end - 1:], tr[key][i, end - 1:], ls=":", **{**style, "alpha": 0.3})
                    ax.plot(end, tr[key][i, end - 1], "x", color="black", ms=5)
            ax.axvline(step, color="0.6", lw=0.8)
            ax.set(ylim=(-0.03, 1.03), xticks=x, xlabel="decoding step", ylabel=ylabel)
            ax.set_title(title, fontsize=10)
            ax.tick_params(labelsize=8)
        legend_outside(ax, [Line2D([], [], color="tab:green", label="path ends correct"),
                            Line2D([], [], color="tab:red", label="path ends wrong"),
                            Line2D([], [], color="0.3", lw=2.4, label=f"path {c} (shown)"),
                            Line2D([], [], color="black", marker="x", ls="none", label="PARM pruned it"),
                            Line2D([], [], color="0.3", ls=":", label="not run (pruned)")])

        final_ok = judge(to_uint8(tr["parm++"].image[None])[0], meta, self.world)[0]
        shown = [("final", i) for i in range(C)] + [("round", r) for r in rounds] + [("result", None)]
        bottom = grid[1].subgridspec(1, len(shown) + 1, width_ratios=[1] * C + [0.25] + [1] * (len(shown) - C))
        for k, (what, item) in enumerate(shown):
            ax = fig.add_subplot(bottom[k if k < C else k + 1])  # a gap between the finals and PARM++
            ax.set(xticks=[], yticks=[])
            if what == "final":  # every candidate's final, with the ORM's and PARM's yes
                ok = tr["final_verdict"][item][0]
                ax.imshow(to_uint8(tr["finals"][item][None])[0], interpolation="nearest")
                chosen = " ← PARM" if item == tr["parm++"].chosen else ""
                ax.set_title(f"path {item} {'✓' if ok else '✗'}{chosen}\nORM {tr['orm'][item]:.2f}\n"
                             f"PARM {tr['parm_yes'][item]:.2f}" + ("\npruned" if parm["pruned"][item] else ""),
                             fontsize=7, color="tab:green" if ok else "tab:red")
                if item == c:
                    for spine in ax.spines.values():
                        spine.set(color="0.3", lw=2.4)
            elif what == "round":  # PARM++ reflects on PARM's choice: the cells it re-masks
                ax.imshow(to_uint8(item["image"][None])[0], interpolation="nearest")
                outline_cells(ax, item["redo"].numpy(), item["image"].shape[-1])
                ax.set_title(f"PARM++ round {k - C + 1}\n{item['kind']}\nyes {item['yes']:.2f}\n"
                             f"re-masks {int(item['redo'].sum())}/{len(item['redo'])}", fontsize=7)
            else:  # what PARM++ returns
                ax.imshow(to_uint8(tr["parm++"].image[None])[0], interpolation="nearest")
                how = f"after {len(rounds)} round{'s' * (len(rounds) > 1)}" if rounds else "PARM said yes:\nno reflection"
                ax.set_title(f"PARM++ returns {'✓' if final_ok else '✗'}\n{how}",
                             fontsize=7, color="tab:green" if final_ok else "tab:red")
        return shown_once(fig, f"“{meta['prompt']}” — {C} candidates, {self.steps} steps; PARM chose path "
                               f"{tr['parm++'].chosen}; PARM++ ends {'✓' if final_ok else '✗'} after "
                               f"{len(rounds)} reflection round(s)")

    def widget(self):
        """A prompt dropdown and candidate and step sliders above the figure, redrawn on every change."""
        import ipywidgets as W

        self.picker = prompt_picker(self.metas, self.prompt)
        self.path_slider = W.IntSlider(value=self.candidate, min=0, max=self.candidates - 1, description="candidate")
        self.slider = W.IntSlider(value=self.step, min=1, max=self.steps, description="step")

        box, self.output = controls_over_figure(self, {"prompt": self.picker, "candidate": self.path_slider,
                                                       "step": self.slider})
        return box
