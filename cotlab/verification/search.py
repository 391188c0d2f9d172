"""Test-time search with verifiers: best-of-N, step-level PRM search, PARM with pruning, PARM++.

Every search makes one final image for one prompt from N candidate paths (``seeds``, one per path:
path c draws from its own random stream, so the first n paths of a search with N are those of a
search with n) and reports what it cost: generator forward passes (two per step with guidance) and
verifier calls, for that one final image. The searches see the generator only through
``cotlab.sampling.Paths`` (``generator.paths(captions, seeds, **options)``; ``options`` such as
``steps`` and ``cfg`` go there), so they work on every generator; reflection needs one that can
``redraw``.

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
from cotlab.metrics import to_uint8
from cotlab.sampling import Paths
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
@torch.no_grad()
def best_of_n(generator, caption: str, seeds: list[int], scorer: Scorer, **options) -> Search:
    """Decode len(seeds) paths and keep the final the scorer likes best."""
    paths = generator.paths([caption] * len(seeds), seeds, **options)
    paths.finish()
    finals = paths.images(final=True)  # (N, 3, H, W)
    scores = scorer(finals, [caption] * len(seeds), torch.ones(len(seeds)))
    best = int(scores.argmax())
    return Search(finals[best], int(paths.passes.sum()), len(seeds), best, {"finals": finals, "scores": scores})


@torch.no_grad()
def step_search(generator, caption: str, seeds: list[int], scorer: Scorer, **options) -> Search:
    """Step-level search with a PRM: keep the best of N continuations at every step."""
    N = len(seeds)
    paths = generator.paths([caption] * N, seeds, **options)
    chosen, trace = 0, {"images": [], "scores": [], "chosen": []}
    for t in range(paths.steps):
        paths.advance(shared=True)  # all N rows hold one state: one forward pass, N samples
        images = paths.images()  # (N, 3, H, W) intermediate
        scores = scorer(images, [caption] * N, torch.full((N,), (t + 1) / paths.steps))
        chosen = int(scores.argmax())
        paths.copy_state(chosen, range(N))
        for key, value in (("images", images), ("scores", scores), ("chosen", chosen)):
            trace[key].append(value)
    return Search(paths.images([chosen], final=True)[0], int(paths.passes.sum()), N * paths.steps, chosen, trace)


@torch.no_grad()
def parm_search(generator, caption: str, seeds: list[int], parm, threshold: float = 0.5,
                paths: Paths | None = None, **options) -> Search:
    """PARM with real pruning (module docstring), on ``paths`` if given (else new ones). ``trace``: per
    path the step it turned clear and its potential there (−1 / nan if never), whether it was
    pruned, and the survivors' ``yes``."""
    N = len(seeds)
    paths = paths or generator.paths([caption] * N, seeds, **options)
    steps = paths.steps
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
        finals = paths.images(survivors, final=True)
        yes[survivors] = parm.judge(finals, [caption] * len(survivors))["yes"].numpy()
        calls += len(survivors)
        chosen = int(survivors[np.nanargmax(yes[survivors])])
        image = finals[list(survivors).index(chosen)]
    else:  # nothing kept: finish the most promising path
        chosen = int(np.nanargmax(potential))
        paths.finish([chosen])
        image = paths.images([chosen], final=True)[0]
    trace = {"clear_at": clear_at, "potential": potential, "pruned": ~alive, "yes": yes,
             "steps_run": paths.position.numpy().copy(), "paths": paths}
    return Search(image, int(paths.passes.sum()), calls, chosen, trace)


@torch.no_grad()
def parm_plus_plus(generator, caption: str, seeds: list[int], parm, threshold: float = 0.5, rounds: int = 3,
                   **options) -> Search:
    """PARM, then up to ``rounds`` of reflection (module docstring)."""
    return reflect(parm_search(generator, caption, seeds, parm, threshold, **options), parm, caption, rounds)


@torch.no_grad()
def reflect(result: Search, parm, caption: str, rounds: int = 3) -> Search:
    """PARM++'s reflection on a PARM result (whose paths its trace keeps): while PARM says no (at most
    ``rounds`` times), redraw the cells it names. The image returned is the first PARM says yes to,
    else the one it rated highest. ``trace["rounds"]`` lists each round's image before redrawing, the
    clause named, the cells redrawn and PARM's yes; passes and calls add up."""
    paths = result.trace["paths"]
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
        paths.redraw(row, redo)
        paths.finish([row])
        image = paths.images([row], final=True)[0]
        judged = parm.judge(image[None], [caption])
        calls += 1
        if float(judged["yes"][0]) > best_yes:
            best, best_yes = image, float(judged["yes"][0])
    return Search(best, int(paths.passes.sum()), calls, row, {**result.trace, "rounds": history, "last": image})


# --- by name: one table for `cotlab generate --verifier`, the benchmark and the notebook ----------
@dataclass(frozen=True)
class Verifier:
    """A named test-time search: how it searches, the shipped checkpoint that judges (None: the exact
    evaluator), how that judge becomes a scorer (None: the search takes the judge itself), the row of
    the paper's table it stands for, and what it does."""
    search: Callable[..., Search]
    checkpoint: str | None
    scorer: Callable[[object, dict], Scorer] | None
    label: str
    description: str


VERIFIERS = {
    "clip": Verifier(best_of_n, "clip", lambda clip, meta: clip_scorer(clip), "ORM zero-shot (CLIPScore)",
                     "best-of-N by CLIPScore (zero-shot ORM)"),
    "orm": Verifier(best_of_n, "orm", lambda orm, meta: reward_scorer(orm), "ORM fine-tuned",
                    "best-of-N by the fine-tuned ORM"),
    "clip-prm": Verifier(step_search, "clip", lambda clip, meta: clip_scorer(clip), "PRM zero-shot (CLIPScore)",
                         "step-level search by CLIPScore on step images (zero-shot PRM)"),
    "prm": Verifier(step_search, "prm", lambda prm, meta: reward_scorer(prm), "PRM fine-tuned",
                    "step-level search by the fine-tuned PRM"),
    "parm": Verifier(parm_search, "parm", None, "PARM", "PARM: clarity, potential (pruning), best-of-N′"),
    "parm++": Verifier(parm_plus_plus, "parm", None, "PARM++", "PARM, then up to 3 rounds of reflection"),
    "oracle": Verifier(best_of_n, None, lambda _, meta: oracle_scorer({meta["prompt"]: meta}),
                       "oracle (exact evaluator)", "best-of-N by the exact evaluator (the upper bound)"),
}


def run(name: str, generator, meta: dict, seeds: list[int], judge=None, **options) -> Search:
    """The search ``name`` (a key of VERIFIERS) for one prompt, with ``judge`` the loaded checkpoint
    VERIFIERS names (None for the oracle); ``options`` go to ``generator.paths``."""
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier '{name}': choose one of {', '.join(VERIFIERS)}")
    verifier = VERIFIERS[name]
    return verifier.search(generator, meta["prompt"], seeds,
                           verifier.scorer(judge, meta) if verifier.scorer else judge, **options)
