"""The searches and scorers of notebook 06 against known answers.

A stand-in generator whose images spell out each path's state (its seed, the step reached, every
draw so far and how often it was redrawn), and stand-in verifiers that read those images back, so
each test knows which candidate a search must pick, what it must prune and what it must cost."""
import re

import numpy as np
import pytest
import torch

from cotlab.metrics import to_tensor
from cotlab.sampling import Paths, row_seeds
from cotlab.shapes import Obj, Scene, World
from cotlab.verification import search
from cotlab.verification.data import KINDS

CAPTION = "a photo of a red circle"
META = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": CAPTION}
COST = 2  # forward passes a step: two with guidance


def spell(seed: int, position: int, draws: list[int], version: int = 0, final: bool = False) -> torch.Tensor:
    """A (3, 4, 4) image carrying a path's state: row 0 the seed, position and version, row 1 the draws,
    row 2 whether it was asked for as a final image (``images(final=True)``) or an intermediate one."""
    image = torch.zeros(3, 4, 4)
    image[0, 0, :3] = torch.tensor([seed, position, version]) / 100
    image[0, 1, :len(draws)] = torch.tensor(draws, dtype=torch.float) / 100
    image[0, 2, 0] = float(final)
    return image


def read(image: torch.Tensor) -> dict:
    """``spell``'s fields back from an image."""
    seed, position, version = (image[0, 0, :3] * 100).round().long().tolist()
    return {"seed": seed, "position": position, "version": version,
            "draws": (image[0, 1, :position] * 100).round().long().tolist(), "final": bool(image[0, 2, 0] > 0.5)}


class SpellingPaths(Paths):
    """Paths whose state is the list of draws: each step appends the row's own seed (a branch that
    shares a state draws its own continuation); ``redraw`` goes back one step and counts a version."""

    def __init__(self, captions, seeds, steps):
        super().__init__(captions, steps, seeds, cost=COST)
        self.seeds = row_seeds(seeds, len(captions))
        self.draws = [[] for _ in captions]
        self.version = [0] * len(captions)
        self.redrawn = []

    def step(self, rows, shared):
        for r in rows.tolist():
            self.draws[r] = self.draws[r] + [self.seeds[r]]

    def images(self, rows=None, final=False):
        return torch.stack([spell(self.seeds[r], int(self.position[r]), self.draws[r], self.version[r], final)
                            for r in self.rows(rows).tolist()])

    def state(self, row):
        return list(self.draws[row])

    def restore(self, row, state):
        self.draws[row], self.position[row] = list(state), len(state)

    def redraw(self, row, cells):
        self.redrawn.append(cells.clone())
        self.version[row] += 1
        self.restore(row, self.draws[row][:-1])


class Spelling:
    def __init__(self):
        self.made = []

    def paths(self, captions, seeds=0, steps=3, cfg=3.0):
        self.made.append(SpellingPaths(captions, seeds, steps))
        return self.made[-1]


class Preferring:
    """A stand-in scorer that likes, at step t, the image whose t-th draw is ``wanted[t]`` (score 1)
    and rates every other by its draw / 100, so that the first, the last and the lowest are wrong."""

    def __init__(self, wanted):
        self.wanted, self.seen, self.finals = wanted, [], []

    def __call__(self, images, captions, progress):
        self.seen.append(progress.clone())
        self.finals += [read(x)["final"] for x in images]
        t = len(self.seen) - 1
        draws = [read(x)["draws"][-1] for x in images]
        return torch.tensor([1.0 if d == self.wanted[t] else d / 100 for d in draws])


class StandInParm:
    """A stand-in PARM that answers per path (by its seed): clear from step ``clear_from[seed]`` on,
    ``potential[seed]``, and ``yes[seed]`` — a list indexed by how often the path was redrawn."""

    def __init__(self, clear_from, potential, yes, redo=None):
        self.clear_from, self.potential, self.yes, self.redo = clear_from, potential, yes, redo
        self.asked, self.finals, self.progress = [], [], []

    def judge(self, images, captions, progress=1.0):
        states = [read(x) for x in images]
        self.asked.append([(s["seed"], s["position"]) for s in states])
        self.finals.append([s["final"] for s in states])
        self.progress.append(torch.as_tensor(progress).expand(len(images)).tolist())
        B = len(images)
        kind = torch.zeros(B, len(KINDS))
        kind[:, KINDS.index("count")] = 1.0
        redo = torch.zeros(B, 16) if self.redo is None else self.redo.expand(B, 16)
        yes = [self.yes[s["seed"]][min(s["version"], len(self.yes[s["seed"]]) - 1)] for s in states]
        # clear: exactly 0.5 (PARM's cut, which counts as clear) from step clear_from[seed] on, else 0
        return {"clear": torch.tensor([0.5 * (s["position"] >= self.clear_from[s["seed"]]) for s in states]),
                "potential": torch.tensor([self.potential[s["seed"]] for s in states]),
                "yes": torch.tensor(yes), "kind": kind, "redo": redo}


SEEDS = [11, 12, 13, 14]


# --- best-of-N and the step-level search ---------------------------------------------------------
def test_best_of_n_keeps_the_final_the_scorer_rates_highest():
    """The favourite is neither the first, the last nor the highest seed; cost N·T·2 passes, N calls."""
    def scorer(images, captions, progress):
        assert progress.tolist() == [1.0] * 4  # finals are judged at t/T = 1
        return torch.tensor([{11: 0.2, 12: 0.3, 13: 0.9, 14: 0.5}[read(x)["seed"]] for x in images])

    found = search.best_of_n(Spelling(), CAPTION, SEEDS, scorer, steps=3)
    assert found.chosen == 2
    assert read(found.image) == {"seed": 13, "position": 3, "version": 0, "draws": [13] * 3, "final": True}
    assert (found.passes, found.calls) == (4 * 3 * COST, 4)
    assert found.trace["scores"].tolist() == pytest.approx([0.2, 0.3, 0.9, 0.5])
    assert [read(x)["seed"] for x in found.trace["finals"] if read(x)["final"]] == SEEDS  # the finals were judged


def test_step_search_follows_the_scorer_at_every_step():
    """Wanted draws 13, 11, 14: the search must keep exactly that branch at each step (copying its
    state to every row), so the final image's draws are [13, 11, 14]; a search that ignores the
    scorer, takes its minimum or does not copy the chosen state ends elsewhere."""
    scorer = Preferring([13, 11, 14])
    found = search.step_search(Spelling(), CAPTION, SEEDS, scorer, steps=3)
    assert read(found.image)["draws"] == [13, 11, 14] and read(found.image)["final"]
    assert not any(scorer.finals)  # each step is judged on its intermediate images
    assert found.trace["chosen"] == [2, 0, 3] and found.chosen == 3
    assert [s.tolist() for s in scorer.seen] == [pytest.approx([t / 3] * 4) for t in (1, 2, 3)]  # progress t/T
    # at step 2 every branch continues the state [13]: draws [13, 11], [13, 12], [13, 13], [13, 14]
    assert [read(x)["draws"] for x in found.trace["images"][1]] == [[13, s] for s in SEEDS]
    assert (found.passes, found.calls) == (3 * COST, 4 * 3)  # one shared pass a step, N calls a step


# --- PARM: pruning, its cost, its choice -------------------------------------------------------------
def test_parm_prunes_below_the_threshold_and_counts_each_call():
    """Four paths, T = 4, θ = 0.5. Path 11 turns clear at step 1 with potential 0.2: pruned there;
    12 clear at 2 with 0.5 (= θ): kept; 13 clear at 3 with 0.49: pruned at 3; 14 never clear, so its
    final (step 4) counts as clear and it is kept whatever its potential (0.1). Yes on finals: 12 0.6,
    14 0.7: PARM picks 14.

    calls: step 1 asks all 4; step 2 the 3 not yet clear; step 3 the 2 left (13, 14); step 4 only 14;
    then the 2 survivors' finals: 4 + 3 + 2 + 1 + 2 = 12.
    passes: 11 ran 1 step, 12 ran 4, 13 ran 3, 14 ran 4: (1 + 4 + 3 + 4)·2 = 24."""
    parm = StandInParm(clear_from={11: 1, 12: 2, 13: 3, 14: 99}, potential={11: .2, 12: .5, 13: .49, 14: .1},
                       yes={11: [.9], 12: [.6], 13: [.95], 14: [.7]})
    result = search.parm_search(Spelling(), CAPTION, SEEDS, parm, threshold=0.5, steps=4)
    trace = result.trace
    assert trace["pruned"].tolist() == [True, False, True, False]
    assert trace["clear_at"].tolist() == [1, 2, 3, 4] and trace["steps_run"].tolist() == [1, 4, 3, 4]
    assert trace["potential"].tolist() == pytest.approx([.2, .5, .49, .1])
    assert np.isnan(trace["yes"][[0, 2]]).all() and trace["yes"][[1, 3]].tolist() == pytest.approx([.6, .7])
    assert (result.calls, result.passes) == (12, 24)
    assert result.chosen == 3 and read(result.image) == {"seed": 14, "position": 4, "version": 0, "draws": [14] * 4,
                                                  "final": True}
    assert [len(a) for a in parm.asked] == [4, 3, 2, 1, 2]  # each look, then the survivors' finals
    assert parm.finals == [[False] * 4, [False] * 3, [False] * 2, [False], [True] * 2]  # looks see the step's image
    assert parm.progress == [[.25] * 4, [.5] * 3, [.75] * 2, [1.0], [1.0] * 2]  # t / T


def test_parm_with_every_path_pruned_finishes_the_most_promising_one():
    """All clear at step 1 below θ = 0.5 (potentials 0.1, 0.4, 0.3, 0.2): path 12 is resumed and
    finished. calls: the 4 looks only; passes: 1 step each, then 12's other 2: (4 + 2)·2 = 12."""
    parm = StandInParm(clear_from=dict.fromkeys(SEEDS, 1), potential={11: .1, 12: .4, 13: .3, 14: .2},
                       yes=dict.fromkeys(SEEDS, [1.0]))
    result = search.parm_search(Spelling(), CAPTION, SEEDS, parm, threshold=0.5, steps=3)
    assert result.trace["pruned"].all() and result.chosen == 1
    assert read(result.image) == {"seed": 12, "position": 3, "version": 0, "draws": [12] * 3, "final": True}
    assert (result.calls, result.passes) == (4, 12)
    assert result.trace["steps_run"].tolist() == [1, 3, 1, 1]
    # the threshold decides: at θ = 0.1 every path is kept and the best yes (all 1.0: the first) wins
    kept = search.parm_search(Spelling(), CAPTION, SEEDS, parm, threshold=0.1, steps=3)
    assert not kept.trace["pruned"].any() and kept.chosen == 0 and (kept.calls, kept.passes) == (4 + 4, 4 * 3 * COST)


# --- PARM++: reflection ----------------------------------------------------------------------------
def test_reflection_stops_at_the_first_yes():
    """PARM keeps only path 12 (yes 0.2); reflection asks again after each redraw: 0.2 → 0.4 → 0.8,
    so two rounds, and the image returned is the second redraw. Each redraw re-masks the cells
    PARM's redo head rates ≥ 0.5 (cells 1 and 6) and costs one step (the stand-in goes back one).
    calls: PARM's 4 + 1 final, then 1 + 2 reflection judgements = 8; passes: 3·1·2 + 3·2 + 2·2 = 16."""
    redo = torch.zeros(16)
    redo[1], redo[6], redo[3] = 0.7, 0.5, 0.45  # 0.5 is a redo
    parm = StandInParm(clear_from=dict.fromkeys(SEEDS, 1), potential={11: 0, 12: .9, 13: 0, 14: 0},
                       yes={11: [0], 12: [.2, .4, .8, .1], 13: [0], 14: [0]}, redo=redo)
    generator = Spelling()
    result = search.parm_plus_plus(generator, CAPTION, SEEDS, parm, steps=3, rounds=3)
    rounds = result.trace["rounds"]
    assert [r["yes"] for r in rounds] == pytest.approx([.2, .4]) and [r["kind"] for r in rounds] == ["count"] * 2
    assert all(np.flatnonzero(r["redo"]).tolist() == [1, 6] for r in rounds)
    assert [np.flatnonzero(c).tolist() for c in generator.made[0].redrawn] == [[1, 6], [1, 6]]
    assert read(result.image)["version"] == 2 and result.chosen == 1 and read(result.image)["final"]
    assert (result.calls, result.passes) == (8, 16)
    assert parm.finals[-3:] == [[True]] * 3  # reflection judges final images


def test_reflection_stops_at_a_yes_of_exactly_one_half():
    """PARM's yes 0.3, then 0.5 after one redraw: 0.5 is a yes (≥ 0.5), so one round only."""
    parm = StandInParm(clear_from=dict.fromkeys(SEEDS, 1), potential=dict.fromkeys(SEEDS, .9),
                       yes={11: [.3, .5, .9], 12: [0], 13: [0], 14: [0]}, redo=torch.full((16,), 0.7))
    result = search.parm_plus_plus(Spelling(), CAPTION, SEEDS[:2], parm, steps=2, rounds=3)
    assert [r["yes"] for r in result.trace["rounds"]] == pytest.approx([.3])
    assert read(result.image)["version"] == 1


def test_parm_plus_plus_passes_on_its_threshold_and_rounds_and_keeps_the_first_of_equal_yeses():
    """rounds = 1: one redraw only; both yeses 0.3, so the first image stays the best. θ = 0.95 above
    every potential (0.9): PARM prunes both paths, whatever PARM++ adds after."""
    parm = StandInParm(clear_from=dict.fromkeys(SEEDS, 1), potential=dict.fromkeys(SEEDS, .9),
                       yes={11: [.3, .3, .3], 12: [0], 13: [0], 14: [0]}, redo=torch.full((16,), 0.7))
    one = search.parm_plus_plus(Spelling(), CAPTION, SEEDS[:2], parm, steps=2, rounds=1)
    assert len(one.trace["rounds"]) == 1 and read(one.image)["version"] == 0 and read(one.trace["last"])["version"] == 1
    assert not one.trace["pruned"].any()
    strict = search.parm_plus_plus(Spelling(), CAPTION, SEEDS[:2], parm, threshold=0.95, steps=2, rounds=1)
    assert strict.trace["pruned"].all()


def test_reflection_without_a_yes_returns_the_image_rated_highest():
    """Yes 0.3 → 0.45 → 0.1 → 0.2 over three rounds, never ≥ 0.5: the image of version 1 (0.45) is
    returned, the last one drawn (version 3) is kept in the trace. With no cell ≥ 0.5 the likeliest
    cell (4) is redrawn."""
    redo = torch.full((16,), 0.1)
    redo[4] = 0.3
    parm = StandInParm(clear_from=dict.fromkeys(SEEDS, 1), potential=dict.fromkeys(SEEDS, .9),
                       yes={11: [.3, .45, .1, .2], 12: [0], 13: [0], 14: [0]}, redo=redo)
    result = search.parm_plus_plus(Spelling(), CAPTION, SEEDS[:2], parm, steps=2, rounds=3)
    assert [r["yes"] for r in result.trace["rounds"]] == pytest.approx([.3, .45, .1])
    assert all(np.flatnonzero(r["redo"]).tolist() == [4] for r in result.trace["rounds"])
    assert read(result.image)["version"] == 1 and read(result.trace["last"])["version"] == 3
    assert result.calls == 2 + 2 + 1 + 3  # PARM (2 looks, 2 finals), first judgement, 3 rounds


# --- the scorers -------------------------------------------------------------------------------------
class Clip:
    """A stand-in CLIP: CLIPScore = 100 · the image's top-left pixel; records its batches."""

    def __init__(self):
        self.batches = []

    def score(self, images, captions):
        self.batches.append(len(images))
        return images[:, 0, 0, 0] * 100


def test_clip_scorer_is_clipscore_over_100_in_batches():
    from cotlab.verification.metrics import clip_probability

    images = torch.zeros(5, 3, 4, 4)
    images[:, 0, 0, 0] = torch.tensor([0.1, 0.5, 0.25, 1.0, 0.0])
    assert search.clip_scorer(Clip())(images, [CAPTION] * 5, torch.ones(5)).tolist() == \
        pytest.approx([0.1, 0.5, 0.25, 1.0, 0.0])
    clip = Clip()
    as_bytes = (images * 255).round().to(torch.uint8)  # uint8 images are read as x / 255
    assert clip_probability(clip, as_bytes, [CAPTION] * 5, batch_size=2).tolist() == \
        pytest.approx([26 / 255, 128 / 255, 64 / 255, 1.0, 0.0], abs=1e-6)
    assert clip.batches == [2, 2, 1]


def test_reward_scorer_reads_the_named_head_and_passes_progress():
    class Model:
        def judge(self, images, captions, progress):
            return {"yes": progress * 2, "potential": progress + 1}

    progress = torch.tensor([0.25, 0.5])
    assert search.reward_scorer(Model())(None, [], progress).tolist() == [0.5, 1.0]
    assert search.reward_scorer(Model(), "potential")(None, [], progress).tolist() == [1.25, 1.5]


def test_oracle_scorer_is_the_exact_verdict():
    right = World().render(Scene((Obj("circle", "red", 1, 1),)))
    wrong_colour = World().render(Scene((Obj("circle", "blue", 1, 1),)))
    blank = World().render(Scene(()))
    images = to_tensor(np.stack([wrong_colour, right, blank, right]))
    assert search.oracle_scorer({CAPTION: META})(images, [CAPTION] * 4, torch.ones(4)).tolist() == [0, 1, 0, 1]


def test_run_builds_each_verifier_from_the_table():
    """``run`` hands each search its scorer (or the judge itself) and the prompt; an unknown name fails."""
    clip = Clip()
    wanted = search.run("clip", Spelling(), META, SEEDS, clip, steps=2)
    assert wanted.chosen == 3 and clip.batches == [4]  # CLIPScore = the top-left pixel · 100 = the seed
    parm = StandInParm(dict.fromkeys(SEEDS, 1), dict.fromkeys(SEEDS, .9), {11: [.1], 12: [.9], 13: [.2], 14: [.3]})
    assert search.run("parm", Spelling(), META, SEEDS, parm, steps=2).chosen == 1
    with pytest.raises(ValueError, match=re.escape("unknown verifier 'rm': choose one of " + ", ".join(search.VERIFIERS))):
        search.run("rm", Spelling(), META, SEEDS)
