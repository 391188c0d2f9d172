"""Training data for the reward models: the base generator's own samples, labelled by the exact evaluator.

For each of M training prompts the generator draws P paths at a high sampling temperature (more
failures to learn from, as the paper's "high temperature"), recording every step's intermediate
image x_t (committed + freshly sampled tokens, decoded). Labels:

- **outcome** (ORM, PARM's selection): y = judge(x_T) ∈ {0, 1}, GenEval's rules on the final image;
- **reflection** (PARM++): the kind of the first failing clause (missing, count, color, position; or
  none) and the cells to redraw — every grid cell not holding an object that satisfies its clause;
- **Monte-Carlo step labels** (Math-Shepherd, arXiv 2312.08935), on the first P′ paths of the first
  M′ prompts: from the state after step t (committed tokens only), k rollouts finish the decoding at
  the test-time temperature, ending in finals z_1 … z_k, and

      potential_t = (1/k) Σ_i judge(z_i)            ≈ P(final correct | state after t)
      prm_t       = max_i judge(z_i)                (the paper's PRM label: "yes" if any rollout ends correct)
      clear_t     = [judge(x_t) = judge(z_i) for every i]   (what the step shows is what it will end as)

  ``clear`` is measured, not assumed: the paper sets clarity by step number (Show-o: clear from
  steps 8–12 of 18); here the first clear step of each path is the *clarity onset*.

The data is built once per (generator, sizes, seed) and cached under ``runs/verifier_data/``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from cotlab import geneval
from cotlab.harness import checkpoint_card, load_checkpoint
from cotlab.io import RUNS_DIR, atomic_output
from cotlab.metrics import to_uint8
from cotlab.sampling import path_seed
from cotlab.shapes import TAGS, World, sample_prompt

KINDS = ("none",) + geneval.CLAUSES  # reflection classes: index 0 = nothing fails


@dataclass(frozen=True)
class DataSpec:
    """What to generate: prompts × paths for outcomes, and the subset that gets rollout labels."""
    generator: str = "maskgit"
    prompts: int = 600  # M
    paths: int = 8  # P per prompt
    rollout_prompts: int = 160  # M′: the first M′ prompts …
    rollout_paths: int = 3  # P′: … and their first P′ paths get step labels
    rollouts: int = 4  # k per step
    sample_temperature: float = 1.5  # of the labelled paths; rollouts use 1.0, as at test time
    steps: int = 8
    cfg: float = 3.0
    seed: int = 0


def reflection_target(image: np.ndarray, meta: dict, world: World = World()) -> tuple[int, np.ndarray]:
    """(kind index into ``KINDS``, redo (grid·grid,) bool) for one uint8 image: what fails first, and
    which cells to redraw — those holding an object of a class the prompt names that satisfies no
    clause (a wrong colour, one too many, one in the wrong place), and, when an object is lacking,
    the empty cells too (room for it). Objects of other classes stay."""
    detections, _ = geneval.detect(image, world)
    verdict = geneval.check(detections, meta)
    if verdict.correct:
        return 0, np.zeros(world.grid * world.grid, bool)

    def cell(d) -> int:
        cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
        return min(int(cy // world.cell), world.grid - 1) * world.grid + min(int(cx // world.cell), world.grid - 1)

    kept = {id(d) for d in verdict.kept}
    named = {req["class"] for req in meta.get("include", [])}
    occupied = np.zeros(world.grid * world.grid, bool)
    redo = np.zeros(world.grid * world.grid, bool)
    for d in detections:
        occupied[cell(d)] = True
        if id(d) not in kept and d.shape in named:
            redo[cell(d)] = True
    if verdict.lacking:
        redo |= ~occupied
    for d in verdict.kept:  # a cell shared with a kept object stays
        redo[cell(d)] = False
    return KINDS.index(verdict.kinds[0]), redo


def _judge_all(images: torch.Tensor, metas: list[dict]) -> list[bool]:
    return [geneval.judge(x, m)[0] for x, m in zip(to_uint8(images), metas)]


@torch.no_grad()
def rollouts(generator, captions: list[str], metas: list[dict], states: list, k: int, seeds: list[int],
             **options) -> np.ndarray:
    """Finish k decodings from each of S partial states (``Paths.state``) at temperature 1: (S, k)
    bool, whether each rollout's final image is correct."""
    S = len(states)
    paths = generator.paths([c for c in captions for _ in range(k)],
                            [path_seed(s, i) for s in seeds for i in range(k)], **options)
    for row, state in enumerate(state for state in states for _ in range(k)):
        paths.restore(row, state)
    paths.finish()
    finals = paths.images(final=True)
    return np.array(_judge_all(finals, [m for m in metas for _ in range(k)])).reshape(S, k)


def build(spec: DataSpec, progress: bool = True) -> dict:
    """The labelled data (see the module docstring) as tensors and lists:

    ``finals``: image (F, 3, H, W) uint8, caption, meta, prompt (F,), correct (F,), kind (F,), redo (F, cells)
    ``steps``:  image (S, 3, H, W) uint8, caption, prompt, path, step (S,) 1 … T, progress t/T,
                final (the path's own outcome), potential, prm, clear (S,), and ``rollout_correct``
                (S, k); the last step's labels are the path's own outcome."""
    model = load_checkpoint(spec.generator)
    metas = prompts(spec)
    F, S = {}, {}  # column name -> values, for finals and step images
    for p, meta in enumerate(tqdm(metas, desc="verifier data", disable=not progress, mininterval=5)):
        captions = [meta["prompt"]] * spec.paths
        paths = model.paths(captions, [path_seed(spec.seed, p, j) for j in range(spec.paths)], steps=spec.steps,
                            cfg=spec.cfg, sample_temperature=spec.sample_temperature)
        states, images = [], []
        while not bool(paths.done().all()):
            paths.advance()
            states.append([paths.state(j) for j in range(spec.paths)])  # each path's state after this step
            images.append(paths.images())  # (P, 3, H, W) intermediate
        final = paths.images(final=True)
        for j, image in enumerate(to_uint8(final)):
            kind, redo = reflection_target(image, meta)
            _add(F, image=image, caption=meta["prompt"], meta=meta, prompt=p, correct=kind == 0,
                 kind=kind, redo=redo)
        if p >= spec.rollout_prompts:
            continue
        P_, T = spec.rollout_paths, spec.steps
        last = [F["correct"][-spec.paths + j] for j in range(P_)]
        partial = [states[t][j] for j in range(P_) for t in range(T - 1)]  # P′(T−1) states
        seeds = [path_seed(spec.seed, p, j, t + 1) for j in range(P_) for t in range(T - 1)]
        outcome = rollouts(model, [meta["prompt"]] * len(partial), [meta] * len(partial), partial, spec.rollouts,
                           seeds, steps=T, cfg=spec.cfg).reshape(P_, T - 1, spec.rollouts)
        for j in range(P_):
            step_images = to_uint8(torch.stack([images[t][j] for t in range(T)]))  # (T, H, W, 3)
            shown = _judge_all(torch.stack([images[t][j] for t in range(T)]), [meta] * T)
            for t in range(T):
                ends = outcome[j, t] if t < T - 1 else np.array([last[j]] * spec.rollouts)
                _add(S, image=step_images[t], caption=meta["prompt"], prompt=p, path=j, step=t + 1, final=last[j],
                     progress=(t + 1) / T, potential=float(ends.mean()), prm=bool(ends.any()),
                     clear=bool((ends == shown[t]).all()), rollout_correct=ends)
    return {"finals": _stack(F), "steps": _stack(S), "spec": asdict(spec)}


def prompts(spec: DataSpec) -> list[dict]:
    """The M prompts of ``spec``, drawn as ``build`` draws them: tags balanced, then the caption grammar."""
    rng = np.random.default_rng(spec.seed)
    return [sample_prompt(rng, tag) for tag in _balanced_tags(spec.prompts, rng)]


def _balanced_tags(n: int, rng: np.random.Generator) -> list[str]:
    tags = [TAGS[i % len(TAGS)] for i in range(n)]
    rng.shuffle(tags)
    return tags


def _add(table: dict[str, list], **row) -> None:
    for key, value in row.items():
        table.setdefault(key, []).append(value)


def _stack(table: dict[str, list]) -> dict:
    out = {}
    for key, values in table.items():
        if key == "image":
            out[key] = torch.from_numpy(np.stack(values)).permute(0, 3, 1, 2).contiguous()  # (·, 3, H, W) uint8
        elif key in ("caption", "meta"):
            out[key] = list(values)
        else:
            out[key] = torch.as_tensor(np.array(values))
    return out


def load_or_build(spec: DataSpec, progress: bool = True) -> dict:
    """``build(spec)``, cached in runs/verifier_data/ under a hash of the spec and the generator's
    checkpoint (a retrained generator gets new data). A cache is judged again on load: ``kind`` and
    ``redo`` follow the current rules; if a final's verdict ``correct`` is not the current rules' own,
    the data is built anew — the step labels came from the rollouts' finals, which are not kept.
    Building leaves the global random stream as it was, so what trains on the data trains the same
    whether it was cached or built first."""
    card = checkpoint_card(spec.generator)
    key = hashlib.sha1(json.dumps([asdict(spec), card.get("date"), card.get("steps")], sort_keys=True)
                       .encode()).hexdigest()[:12]
    path = RUNS_DIR / "verifier_data" / f"{spec.generator}-{key}.pt"
    if path.is_file():
        data = torch.load(path, weights_only=False)
        finals = data["finals"]  # the evaluator's labels are cheap: recomputed, so they follow the current rules
        targets = [reflection_target(x, m) for x, m in zip(finals["image"].permute(0, 2, 3, 1).numpy(), finals["meta"])]
        finals["kind"] = torch.tensor([k for k, _ in targets])
        finals["redo"] = torch.from_numpy(np.stack([r for _, r in targets]))
        if torch.equal(finals["correct"], finals["kind"] == 0):
            return data
    with torch.random.fork_rng():
        data = build(spec, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(data, tmp)
    return data
