"""Test-time search with verifiers: best-of-N, step-level PRM search, PARM with pruning, PARM++.

Every search makes one final image for one prompt from N candidate paths (``seeds``, one per path:
path c draws from its own random stream, so the first n paths of a search with N are those of a
search with n) and reports what it cost: generator forward passes (two per step with guidance) and
verifier calls, for that one final image.

- **best-of-N** (ORM; the exact evaluator as an oracle): decode N paths, score the N finals, keep the best.
- **step-level search** (PRM): at each step t, draw N continuations of the one current state (one
  forward pass: they share the logits and differ in their samples), score the N intermediate images,
  keep the best as the state; the paper leaves the branching open, this is the cheapest choice.
- **PARM** (potential assessment): N paths step by step. A path's step image is asked *clear?* until
  it is; at its first clear step it is asked *potential?* and, if p_potential < θ, the path **stops
  there** — it costs no more passes (the paper's released code decodes every path to the end). The
  survivors are decoded to the end and the best final by ``yes`` wins; if none survives, the path
  with the highest potential is resumed and finished.
- **PARM++** (reflection): PARM's choice, then up to ``rounds`` times: if PARM says no, its
  reflection heads name the failing clause and the cells to redraw; those tokens are re-masked and
  the path decodes again from there (MaskGIT inpainting), until PARM says yes — else the image it
  rated highest is kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from cotlab import geneval
from cotlab.masked_ar.decoding import Paths
from cotlab.tokenizers.metrics import to_uint8
from cotlab.verification.data import KINDS
from cotlab.verification.metrics import clip_probability

Scorer = Callable[[torch.Tensor, list[str], torch.Tensor], torch.Tensor]  # (images, captions, t/T) -> (B,) in [0, 1]


@dataclass
class Search:
    """One final ``image`` (3, H, W) in [0, 1] and what it cost; ``trace`` holds what the viewer shows."""
    image: torch.Tensor
    passes: int
    calls: int
    chosen: int  # the path whose image it is
    trace: dict = field(default_factory=dict)


# --- scorers ---------------------------------------------------------------------------------------
def clip_scorer(clip) -> Scorer:
    """Zero-shot: CLIPScore / 100 (the step's progress is ignored)."""
    return lambda images, captions, progress: clip_probability(clip, images, captions)


def reward_scorer(model, head: str = "yes") -> Scorer:
    """A trained reward model's probability from one head."""
    return lambda images, captions, progress: model.judge(images, captions, progress)[head]


def oracle_scorer(metas_by_caption: dict[str, dict]) -> Scorer:
    """The exact evaluator as a verifier: 1 if GenEval's rules pass, else 0."""
    def score(images, captions, progress):
        return torch.tensor([float(geneval.judge(x, metas_by_caption[c])[0])
                             for x, c in zip(to_uint8(images), captions)])
    return score


# --- searches ----------------------------------------------------------------------------------
def _paths(model, caption: str, seeds: list[int], steps: int, cfg: float) -> Paths:
    return Paths(model, [caption] * len(seeds), steps, cfg, seeds)


@torch.no_grad()
def best_of_n(model, caption: str, seeds: list[int], scorer: Scorer, steps: int = 8, cfg: float = 3.0) -> Search:
    """Decode len(seeds) paths and keep the final the scorer likes best."""
    paths = _paths(model, caption, seeds, steps, cfg)
    while not bool(paths.done().all()):
        paths.advance()
    finals = paths.images(sampled=False)  # (N, 3, H, W)
    scores = scorer(finals, [caption] * len(seeds), torch.ones(len(seeds)))
    best = int(scores.argmax())
    return Search(finals[best], int(paths.passes.sum()), len(seeds), best, {"finals": finals, "scores": scores})


@torch.no_grad()
def step_search(model, caption: str, seeds: list[int], scorer: Scorer, steps: int = 8, cfg: float = 3.0) -> Search:
    """Step-level search with a PRM: keep the best of N continuations at every step."""
    paths, N = _paths(model, caption, seeds, steps, cfg), len(seeds)
    chosen, trace = 0, {"images": [], "scores": [], "chosen": []}
    for t in range(steps):
        paths.advance(shared=True)  # all N rows hold one state: one forward pass, N samples
        images = paths.images()  # (N, 3, H, W) intermediate
        scores = scorer(images, [caption] * N, torch.full((N,), (t + 1) / steps))
        chosen = int(scores.argmax())
        paths.copy_state(chosen, range(N))
        for key, value in (("images", images), ("scores", scores), ("chosen", chosen)):
            trace[key].append(value)
    return Search(paths.images([chosen], sampled=False)[0], int(paths.passes.sum()), N * steps, chosen, trace)


@torch.no_grad()
def parm_search(model, caption: str, seeds: list[int], parm, steps: int = 8, cfg: float = 3.0,
                threshold: float = 0.5, paths: Paths | None = None) -> Search:
    """PARM with real pruning (module docstring). ``trace``: per path the step it turned clear and its
    potential there (−1 / nan if never), whether it was pruned, and the survivors' ``yes``."""
    N = len(seeds)
    paths = paths or _paths(model, caption, seeds, steps, cfg)
    clear_at = np.full(N, -1)
    potential = np.full(N, np.nan)
    alive = np.ones(N, bool)
    calls = 0
    while True:
        rows = np.flatnonzero(alive & ~paths.done().numpy())
        if len(rows) == 0:
            break
        paths.advance(rows)
        look = [r for r in rows if clear_at[r] < 0]  # paths not yet judged clear
        if look:
            t = int(paths.position[look[0]])
            judged = parm.judge(paths.images(look), [caption] * len(look), torch.full((len(look),), t / steps))
            calls += len(look)
            for i, r in enumerate(look):
                if judged["clear"][i] >= 0.5 or t == steps:  # a final image is always clear
                    clear_at[r], potential[r] = t, float(judged["potential"][i])
                    alive[r] = potential[r] >= threshold or t == steps
    survivors = np.flatnonzero(alive)
    yes = np.full(N, np.nan)
    if len(survivors):
        finals = paths.images(survivors, sampled=False)
        yes[survivors] = parm.judge(finals, [caption] * len(survivors))["yes"].numpy()
        calls += len(survivors)
        chosen = int(survivors[np.nanargmax(yes[survivors])])
        image = finals[list(survivors).index(chosen)]
    else:  # nothing kept: finish the most promising path
        chosen = int(np.nanargmax(potential))
        while not bool(paths.done([chosen]).all()):
            paths.advance([chosen])
        image = paths.images([chosen], sampled=False)[0]
    trace = {"clear_at": clear_at, "potential": potential, "pruned": ~alive, "yes": yes,
             "steps_run": paths.position.numpy().copy()}
    return Search(image, int(paths.passes.sum()), calls, chosen, trace)


@torch.no_grad()
def parm_plus_plus(model, caption: str, seeds: list[int], parm, steps: int = 8, cfg: float = 3.0,
                   threshold: float = 0.5, rounds: int = 3) -> Search:
    """PARM, then up to ``rounds`` of reflection (module docstring)."""
    paths = _paths(model, caption, seeds, steps, cfg)
    return reflect(model, paths, parm_search(model, caption, seeds, parm, steps, cfg, threshold, paths), parm,
                   caption, rounds)


@torch.no_grad()
def reflect(model, paths: Paths, result: Search, parm, caption: str, rounds: int = 3) -> Search:
    """PARM++'s reflection on a PARM result (its ``paths`` still at hand): while PARM says no (at most
    ``rounds`` times), re-mask the cells it names and decode them again. The image returned is the
    first PARM says yes to, else the one it rated highest. ``trace["rounds"]`` lists each round's
    image before redrawing, the clause named, the cells re-masked and PARM's yes; passes and calls add up."""
    image, row, history = result.image, result.chosen, []
    judged = parm.judge(image[None], [caption])
    calls = result.calls + 1
    best, best_yes = image, float(judged["yes"][0])
    for _ in range(rounds):
        if judged["yes"][0] >= 0.5:
            break
        redo = judged["redo"][0] >= 0.5  # (cells,)
        if not bool(redo.any()):
            redo = judged["redo"][0] == judged["redo"][0].max()  # at least the likeliest cell
        history.append({"image": image, "kind": KINDS[int(judged["kind"][0].argmax())], "redo": redo,
                        "yes": float(judged["yes"][0])})
        tokens = paths.tokens[row].clone()
        tokens[cells_to_tokens(redo, model.num_tokens)] = model.mask_id
        paths.restart(row, tokens)
        while not bool(paths.done([row]).all()):
            paths.advance([row])
        image = paths.images([row], sampled=False)[0]
        judged = parm.judge(image[None], [caption])
        calls += 1
        if float(judged["yes"][0]) > best_yes:
            best, best_yes = image, float(judged["yes"][0])
    return Search(best, int(paths.passes.sum()), calls, row, {**result.trace, "rounds": history, "last": image})


def cells_to_tokens(redo: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Token positions (N,) bool under the redo cells (cells,) of the grid: a token grid of side s over a
    cell grid of side g gives each cell (s/g)² tokens."""
    g, s = int(round(len(redo) ** 0.5)), int(round(num_tokens ** 0.5))
    cells = redo.reshape(g, g).float()
    return torch.nn.functional.interpolate(cells[None, None], size=(s, s), mode="nearest")[0, 0].bool().reshape(-1)


# --- by name: what `cotlab generate --verifier NAME` runs ------------------------------------------
VERIFIERS = {  # name -> (the shipped checkpoint it needs, what it does)
    "clip": ("clip", "best-of-N by CLIPScore (zero-shot ORM)"),
    "orm": ("orm", "best-of-N by the fine-tuned ORM"),
    "clip-prm": ("clip", "step-level search by CLIPScore on step images (zero-shot PRM)"),
    "prm": ("prm", "step-level search by the fine-tuned PRM"),
    "parm": ("parm", "PARM: clarity, potential (pruning), best-of-N′"),
    "parm++": ("parm", "PARM, then up to 3 rounds of reflection"),
    "oracle": (None, "best-of-N by the exact evaluator (the upper bound)"),
}


def run(name: str, model, meta: dict, seeds: list[int], verifier=None, steps: int = 8, cfg: float = 3.0) -> Search:
    """The search ``name`` (a key of VERIFIERS) for one prompt, with ``verifier`` the loaded checkpoint
    VERIFIERS names (None for the oracle)."""
    caption = meta["prompt"]
    if name in ("clip", "orm", "oracle"):
        scorer = (oracle_scorer({caption: meta}) if name == "oracle" else
                  clip_scorer(verifier) if name == "clip" else reward_scorer(verifier))
        return best_of_n(model, caption, seeds, scorer, steps, cfg)
    if name in ("clip-prm", "prm"):
        scorer = clip_scorer(verifier) if name == "clip-prm" else reward_scorer(verifier)
        return step_search(model, caption, seeds, scorer, steps, cfg)
    if name == "parm":
        return parm_search(model, caption, seeds, verifier, steps, cfg)
    if name == "parm++":
        return parm_plus_plus(model, caption, seeds, verifier, steps, cfg)
    raise ValueError(f"unknown verifier '{name}': choose one of {', '.join(VERIFIERS)}")
