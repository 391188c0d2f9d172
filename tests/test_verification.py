"""Verification: step-wise decoding paths, the labels, the reward model, the searches and their costs.

Searches run on a smoke-size MaskGIT (shipped ``vq_f8`` tokens and ``clip`` text encoder), and on a
stand-in generator that is not one, with scripted verifiers, so each test knows what the search must do."""
import numpy as np
import pytest
import torch

from cotlab import geneval
from cotlab.cli import main
from cotlab.errors import CotlabError
from cotlab.generate import generate_folder
from cotlab.masked_ar.decoding import cells_to_tokens, mask_schedule
from cotlab.masked_ar.model import MaskedAR, MaskedARConfig
from cotlab.metrics import to_tensor
from cotlab.sampling import Paths, path_seed, row_seeds, sample
from cotlab.shapes import Obj, Scene, World
from cotlab.verification import search
from cotlab.verification.data import KINDS, reflection_target
from cotlab.verification.metrics import classification, within_prompt_auroc
from cotlab.verification.reward import RewardConfig, RewardExamples, RewardModel

CAPTION = "a photo of a red circle"
META = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": CAPTION}


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return MaskedAR(MaskedARConfig.for_profile("smoke")).eval()


class Scripted:
    """A stand-in PARM whose answers are fixed per path (rows in order of first sight are not
    known to it, so it answers by the image: ``potential`` is 1 only for images of ``good``)."""

    def __init__(self, good: torch.Tensor | None = None, yes: float = 1.0, redo_cell: int = 0):
        self.good, self.yes, self.redo_cell, self.calls = good, yes, redo_cell, 0

    def judge(self, images, captions, progress=1.0):
        B = len(images)
        self.calls += B
        good = torch.tensor([bool(self.good is not None and (x - self.good).abs().max() < 1e-6) for x in images])
        redo = torch.zeros(B, 16)
        redo[:, self.redo_cell] = 1.0
        kind = torch.zeros(B, len(KINDS))
        kind[:, 3] = 1.0
        return {"yes": torch.full((B,), self.yes), "clear": torch.ones(B), "potential": good.float(),
                "kind": kind, "redo": redo}


def test_a_path_depends_only_on_its_own_seed(generator):
    seeds = [path_seed(0, 1, 2, c) for c in range(3)]
    together = sample(generator, [CAPTION] * 3, seeds, steps=4).tokens
    alone = sample(generator, [CAPTION], seeds[1:2], steps=4).tokens
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[1])
    assert path_seed(0, 1, 2, 0) != path_seed(0, 1, 2) and path_seed(0, 1) == path_seed(0, 1)


def test_stopped_paths_leave_the_others_unchanged_and_cost_nothing(generator):
    paths = generator.paths([CAPTION] * 3, [11, 12, 13], steps=4)
    paths.advance()
    paths.finish([0, 2])  # path 1 stops after one step
    full = sample(generator, [CAPTION] * 3, [11, 12, 13], steps=4)
    assert torch.equal(paths.tokens[[0, 2]], full.tokens[[0, 2]])
    assert paths.passes.tolist() == [8, 2, 8]  # two passes a step with guidance


def test_restore_resumes_the_schedule_where_as_many_tokens_are_masked(generator):
    counts = mask_schedule(8, 16)
    paths = generator.paths([CAPTION], [5], steps=8)
    paths.finish()
    final = paths.tokens[0].clone()
    redo = torch.zeros(16, dtype=torch.bool)
    redo[[0, 5, 9]] = True
    paths.restore(0, final.masked_fill(redo, generator.mask_id))
    assert int(paths.position[0]) == next(t for t, n in enumerate(counts) if n < 3)
    paths.finish()
    assert torch.equal(paths.tokens[0][~redo], final[~redo])  # only the re-masked tokens were redrawn
    assert int((paths.tokens[0] == generator.mask_id).sum()) == 0
    paths.redraw(0, torch.arange(16) == 5)  # a cell of the 4×4 grid is one f8 token
    assert (paths.tokens[0] == generator.mask_id).tolist() == [i == 5 for i in range(16)]
    assert cells_to_tokens(torch.arange(16) == 5, 64).sum() == 4  # a cell is 2×2 tokens at f4


def test_best_of_n_and_step_search_costs(generator):
    seeds = [path_seed(0, 0, 0, c) for c in range(4)]
    oracle = search.oracle_scorer({CAPTION: META})
    found = search.best_of_n(generator, CAPTION, seeds, oracle, steps=4)
    assert (found.passes, found.calls) == (4 * 4 * 2, 4)
    scores = found.trace["scores"]
    assert scores[found.chosen] == scores.max()
    stepped = search.step_search(generator, CAPTION, seeds, oracle, steps=4)
    assert (stepped.passes, stepped.calls) == (4 * 2, 4 * 4)  # N branches share each step's forward pass
    assert stepped.trace["chosen"] == [int(s.argmax()) for s in stepped.trace["scores"]]
    assert torch.allclose(stepped.image, stepped.trace["images"][-1][stepped.chosen])  # the last step's pick


def test_parm_prunes_hopeless_paths_and_keeps_the_promising_one(generator):
    seeds = [path_seed(0, 0, 0, c) for c in range(4)]
    probe = generator.paths([CAPTION] * 4, seeds, steps=4)
    probe.advance()
    good = probe.images([2])[0]  # path 2's first step image: the only one with potential
    result = search.parm_search(generator, CAPTION, seeds, Scripted(good), steps=4)
    assert result.chosen == 2 and result.trace["pruned"].tolist() == [True, True, False, True]
    assert result.passes == 3 * 2 + 4 * 2  # three paths stop after step 1
    full = sample(generator, [CAPTION] * 4, seeds, steps=4)
    assert torch.allclose(result.image, full.images[2])  # the survivor ends as its uninterrupted twin
    # with nothing promising, the most promising path is finished anyway
    fallback = search.parm_search(generator, CAPTION, seeds, Scripted(None), steps=4)
    assert fallback.trace["pruned"].all() and fallback.chosen == 0  # every potential 0: the first
    assert torch.allclose(fallback.image, full.images[0])  # resumed, it ends as its uninterrupted twin


def test_reflection_redraws_the_named_cells_up_to_three_rounds(generator):
    seeds = [path_seed(0, 0, 0, c) for c in range(2)]
    parm = Scripted(None, yes=0.0, redo_cell=5)
    result = search.parm_plus_plus(generator, CAPTION, seeds, parm, steps=4)
    rounds = result.trace["rounds"]
    assert len(rounds) == 3 and all(r["kind"] == KINDS[3] and r["redo"].tolist() == [i == 5 for i in range(16)]
                                    for r in rounds)
    said_yes = search.parm_plus_plus(generator, CAPTION, seeds, Scripted(None, yes=1.0), steps=4)
    assert said_yes.trace["rounds"] == []


def test_reflection_target_names_the_clause_and_keeps_what_is_right():
    world = World()
    scene = Scene((Obj("circle", "blue", 1, 1), Obj("square", "green", 2, 3)))
    image = world.render(scene)
    kind, redo = reflection_target(image, META, world)
    assert KINDS[kind] == "color" and np.flatnonzero(redo).tolist() == [1 * 4 + 1]  # only the wrong circle
    meta = {"tag": "two_object", "include": [{"class": "circle", "count": 1}, {"class": "triangle", "count": 1}],
            "prompt": "a photo of a circle and a triangle"}
    kind, redo = reflection_target(image, meta, world)
    assert KINDS[kind] == "missing" and redo.sum() == 14 and not redo[1 * 4 + 1] and not redo[2 * 4 + 3]  # room
    right = world.render(Scene((Obj("circle", "red", 0, 0),)))
    assert reflection_target(right, META, world)[0] == 0 and geneval.check(geneval.detect(right)[0], META).correct


def test_classification_against_brute_force():
    rng = np.random.default_rng(0)
    s, y = rng.random(200).round(1), rng.random(200) < 0.4  # many ties, and scores exactly at 0.5
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]  # Mann–Whitney: ties count ½
    said = s >= 0.5
    q = classification(s, y)
    assert q["auroc"] == pytest.approx(np.mean(pairs))
    assert q["precision"] == pytest.approx((said & y).sum() / said.sum())
    assert q["recall"] == pytest.approx((said & y).sum() / y.sum())
    assert q["accuracy"] == pytest.approx((said == y).mean()) and q["positives"] == pytest.approx(y.mean())
    q = classification([0.9, 0.8, 0.2, 0.6], [True, False, False, True])
    assert q["precision"] == pytest.approx(2 / 3) and q["recall"] == 1.0 and q["auroc"] == pytest.approx(0.75)
    assert np.isnan(classification([0.1, 0.2], [True, True])["auroc"])  # one class: undefined


def test_within_prompt_auroc_ranks_each_prompts_samples_only():
    """Known answers: prompt 0's right sample scores highest (AUROC 1), prompt 1's right samples lowest
    (0), prompt 2's are all right (left out): mean ½ over 2 prompts. A verifier that only tells a hard
    prompt from an easy one scores well pooled (5/6) and at chance within the prompt (½)."""
    q = within_prompt_auroc([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3], [1.0, 1.0, 1.0]], [[1, 0, 0], [1, 0, 1], [1, 1, 1]])
    assert q["auroc"] == pytest.approx(0.5) and q["prompts"] == 2
    assert q["interval"][0] <= 0.5 <= q["interval"][1] and q["interval"][0] == pytest.approx(0.0)
    scores, labels = [[0.9, 0.9], [0.1, 0.1]], [[1, 0], [0, 0]]
    assert classification(np.ravel(scores), np.ravel(labels))["auroc"] == pytest.approx(5 / 6)
    assert within_prompt_auroc(scores, labels) == {"auroc": 0.5, "interval": [0.5, 0.5], "prompts": 1}
    rng = np.random.default_rng(1)  # against brute force, ties included
    s, y = rng.random((30, 8)).round(1), rng.random((30, 8)) < 0.5
    mixed = [i for i in range(30) if 0 < y[i].sum() < 8]
    brute = np.mean([np.mean([(a > b) + 0.5 * (a == b) for a in s[i][y[i]] for b in s[i][~y[i]]]) for i in mixed])
    assert within_prompt_auroc(s, y)["auroc"] == pytest.approx(brute) and within_prompt_auroc(s, y)["prompts"] == len(mixed)
    assert np.isnan(within_prompt_auroc([[0.1, 0.2]], [[1, 1]])["auroc"])


def _data(n=4):
    images = torch.randint(0, 255, (n, 3, 32, 32), dtype=torch.uint8)
    finals = {"image": images, "caption": [CAPTION] * n, "correct": torch.tensor([True, False] * (n // 2)),
              "kind": torch.tensor([0, 3] * (n // 2)), "redo": torch.zeros(n, 16, dtype=torch.bool)}
    steps = {"image": images, "caption": [CAPTION] * n, "progress": torch.linspace(0.25, 1, n),
             "prm": torch.tensor([True] * n), "clear": torch.tensor([False, True] * (n // 2)),
             "potential": torch.linspace(0, 1, n)}
    return {"finals": finals, "steps": steps}


def test_reward_model_heads_and_which_examples_each_task_learns_from():
    model = RewardModel(RewardConfig.for_profile("smoke", task="parm")).eval()
    out = model(torch.rand(3, 3, 32, 32), [CAPTION, CAPTION, "a photo of two squares"], torch.tensor([0.25, 1, 1]))
    assert out["yes"].shape == (3,) and out["kind"].shape == (3, len(KINDS)) and out["redo"].shape == (3, 16)
    images = torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8)
    judged, logits = model.judge(images, [CAPTION] * 3, batch_size=2), model(images, [CAPTION] * 3)
    assert torch.allclose(judged["yes"], logits["yes"].sigmoid(), atol=1e-6)  # probabilities, batch after batch
    assert torch.allclose(judged["kind"], logits["kind"].softmax(-1), atol=1e-6)
    data = _data()
    assert len(RewardExamples(data, "orm")) == 4 and len(RewardExamples(data, "prm")) == 4
    parm = RewardExamples(data, "parm")
    assert len(parm) == 8 and sum(e["has_clear"] for e in parm) == 4 and sum(e["has_yes"] for e in parm) == 4
    loss, logs = model.loss(torch.utils.data.default_collate([parm[i] for i in range(8)]))
    assert torch.isfinite(loss) and {"yes_loss", "clear_loss", "potential_loss", "kind_loss"} <= set(logs)
    with pytest.raises(ValueError, match="unknown reward task"):
        RewardConfig.for_profile("smoke", task="rm")


def test_generate_with_a_verifier(tmp_path, generator):
    metas = [META, {**META, "prompt": "a photo of a blue square", "include": [{"class": "square", "count": 1,
                                                                                 "color": "blue"}]}]
    out = generate_folder(generator, metas, tmp_path / "o", n_samples=2, verifier="oracle", candidates=3, steps=4)
    cost = __import__("json").loads((out / "00001" / "search.json").read_text())
    assert len(cost) == 2 and cost[0]["passes"] == 3 * 4 * 2 and cost[0]["verifier_calls"] == 3
    assert geneval.score_folder(out)["images"] == 4
    with pytest.raises(CotlabError, match="unknown verifier"):
        generate_folder(generator, metas, tmp_path / "p", verifier="rm")
    with pytest.raises(CotlabError, match="other settings"):
        generate_folder(generator, metas, out, n_samples=2, verifier="oracle", candidates=5, steps=4)



def test_generate_help_lists_every_verifier_of_the_table(capsys):
    assert main(["generate", "--help"]) == 0
    out = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
    assert all("".join(f"{name}: {v.description}".split()) in out for name, v in search.VERIFIERS.items())


def test_reward_viewer_renders_scores_pruning_and_reflection(generator):
    from cotlab.verification.viewer import RewardViewer

    def tiny(task):
        torch.manual_seed(0)
        return RewardModel(RewardConfig.for_profile("smoke", task=task)).eval()

    from cotlab.harness import load_checkpoint
    verifiers = {"clip": load_checkpoint("clip"), "orm": tiny("orm"), "prm": tiny("prm"), "parm": tiny("parm")}
    metas = [META, {**META, "prompt": "a photo of two squares", "tag": "counting",
                    "include": [{"class": "square", "count": 2}], "exclude": [{"class": "square", "count": 3}]}]
    viewer = RewardViewer(generator, verifiers, metas, candidates=3, steps=4)
    trace = viewer.trace(1)
    assert trace["images"].shape == (3, 4, 3, 32, 32) and trace["prm"].shape == (3, 4)
    fig = viewer.render(prompt=1, candidate=2, step=3)
    assert len(fig.axes) >= 6 and "two squares" in fig._suptitle.get_text()
    with pytest.raises(CotlabError, match="out of range"):
        viewer.render(prompt=1, candidate=3)
    with pytest.raises(CotlabError, match="needs the verifiers"):
        RewardViewer(generator, {"clip": verifiers["clip"]}, metas)
    verdicts = {0: [(True, ""), (True, ""), (True, "")], 1: [(False, "wrong"), (True, ""), (False, "wrong")]}
    viewer.decode = lambda prompt: {"final_verdict": verdicts[prompt]}
    assert viewer.first_mixed() == 1  # the first prompt whose candidates end both right and wrong


# --- the searches see only the sampling interface ----------------------------------------------------
RIGHT = World().render(Scene((Obj("circle", "red", 1, 1),)))  # what META asks for
WRONG = World().render(Scene((Obj("circle", "blue", 1, 1),)))


class StandInPaths(Paths):
    """Paths of a generator that is not a MaskedAR: a path whose seed is even paints the right image
    (a red circle), an odd one the wrong one (blue), both visible from the first step; the state is
    the step reached."""

    def __init__(self, captions, seeds, steps):
        super().__init__(captions, steps, seeds, cost=1)
        self.seeds = row_seeds(seeds, len(captions))

    def step(self, rows, shared):
        pass

    def images(self, rows=None, final=False):
        return to_tensor(np.stack([RIGHT if self.seeds[r] % 2 == 0 else WRONG for r in self.rows(rows).tolist()]))

    def state(self, row):
        return int(self.position[row])

    def restore(self, row, state):
        self.position[row] = state


class StandIn:
    def paths(self, captions, seeds=0, steps=4, cfg=3.0):
        return StandInPaths(captions, seeds, steps)


def test_searches_work_on_any_generator_that_offers_paths(tmp_path):
    seeds = [1, 3, 4, 5]  # only path 2 (seed 4) paints the right image
    oracle = search.oracle_scorer({CAPTION: META})
    found = search.best_of_n(StandIn(), CAPTION, seeds, oracle, steps=3)
    assert found.chosen == 2 and (found.passes, found.calls) == (4 * 3, 4)
    stepped = search.step_search(StandIn(), CAPTION, seeds, oracle, steps=3)
    assert torch.equal(stepped.image, to_tensor(RIGHT[None])[0]) and stepped.passes == 3
    right = to_tensor(RIGHT[None])[0]
    parm = search.parm_search(StandIn(), CAPTION, seeds, Scripted(right), steps=3)
    assert parm.chosen == 2 and parm.trace["pruned"].tolist() == [True, True, False, True]
    assert parm.passes == 3 * 1 + 3  # the three others are pruned after their first step
    with pytest.raises(CotlabError, match="cannot redraw"):
        search.parm_plus_plus(StandIn(), CAPTION, [1, 3], Scripted(right, yes=0.0), steps=3)
    out = generate_folder(StandIn(), [META], tmp_path / "o", n_samples=2, verifier="oracle", candidates=4, steps=3)
    assert geneval.score_folder(out, quiet=True)["overall"] == 1.0  # every image chosen right
