"""The reward models' data and their held-out quality against known answers: the Monte-Carlo labels
on a stand-in generator whose rollouts' outcomes are scripted, the cache judged again on load, and
``heldout_quality`` on stand-in data whose every metric is hand-computed."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cotlab.metrics import to_tensor
from cotlab.sampling import Paths
from cotlab.shapes import Obj, Scene, World
from cotlab.verification import data as verifier_data
from cotlab.verification import metrics
from cotlab.verification.data import KINDS, DataSpec, build, load_or_build, prompts

CAPTION = "a photo of a red circle"
META = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": CAPTION}
RIGHT = World().render(Scene((Obj("circle", "red", 1, 1),)))
WRONG = World().render(Scene((Obj("circle", "blue", 1, 1),)))  # a wrong colour in cell 1·4 + 1
K = 4  # rollouts per step


class ScriptedPaths(Paths):
    """Labelled paths (``rollout`` False): path 0 shows the right image from step 2 on and ends right,
    path 1 shows and ends wrong. Rollouts from path j's state after step t: rollout i ends right iff
    i < t − j, so from path 0 after step t, t of the 4 end right; from path 1, t − 1."""

    def __init__(self, captions, seeds, steps, rollout):
        super().__init__(captions, steps, seeds, cost=1)
        self.rollout = rollout
        self.origin = [(r, 0) for r in range(len(captions))]  # (labelled path, step) a row started from

    def step(self, rows, shared):
        pass

    def right(self, row) -> bool:
        j, t = self.origin[row]
        return row % K < t - j if self.rollout else j == 0 and int(self.position[row]) >= 2

    def images(self, rows=None, final=False):
        return to_tensor(np.stack([RIGHT if self.right(r) else WRONG for r in self.rows(rows).tolist()]))

    def state(self, row):
        return row, int(self.position[row])

    def restore(self, row, state):
        self.origin[row], self.position[row] = state, state[1]


class Scripted:
    def __init__(self):
        self.builds = 0

    def paths(self, captions, seeds=0, steps=4, cfg=3.0, sample_temperature=None):
        self.builds += sample_temperature is not None
        return ScriptedPaths(captions, seeds, steps, rollout=sample_temperature is None)


SPEC = DataSpec(prompts=1, paths=2, rollout_prompts=1, rollout_paths=2, rollouts=K, steps=4)


@pytest.fixture
def scripted(monkeypatch, tmp_path):
    """The stand-in generator in place of the checkpoint, every prompt META, the cache in tmp_path."""
    generator = Scripted()
    monkeypatch.setattr(verifier_data, "load_checkpoint", lambda name: generator)
    monkeypatch.setattr(verifier_data, "sample_prompt", lambda rng, tag: META)
    monkeypatch.setattr(verifier_data, "RUNS_DIR", tmp_path)
    return generator


def test_monte_carlo_labels_are_the_mean_and_the_max_over_rollouts(scripted):
    """Path 0 (ends right) after steps 1, 2, 3: 1, 2, 3 of 4 rollouts right; path 1 (ends wrong):
    0, 1, 2. potential = their mean, prm = any (the max), and the last step's labels are the path's
    own outcome. clear: every rollout ends as the step shows — path 0 shows wrong at step 1 and right
    after; path 1 shows wrong throughout, so its step 1 (no rollout right) is clear."""
    steps = build(SPEC, progress=False)["steps"]
    assert steps["step"].tolist() == [1, 2, 3, 4] * 2 and steps["path"].tolist() == [0] * 4 + [1] * 4
    assert steps["potential"].tolist() == pytest.approx([1 / 4, 2 / 4, 3 / 4, 1, 0, 1 / 4, 2 / 4, 0])
    assert steps["prm"].tolist() == [True, True, True, True, False, True, True, False]
    assert steps["clear"].tolist() == [False, False, False, True, True, False, False, True]
    assert steps["final"].tolist() == [True] * 4 + [False] * 4
    assert steps["progress"].tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0] * 2)
    assert steps["rollout_correct"][1].tolist() == [True, True, False, False]  # path 0 after step 2
    assert steps["rollout_correct"][7].tolist() == [False] * K  # path 1's last step: its own outcome


def test_finals_carry_the_verdict_and_the_reflection_target(scripted):
    finals = build(SPEC, progress=False)["finals"]
    assert finals["correct"].tolist() == [True, False] and finals["caption"] == [CAPTION] * 2
    assert [KINDS[k] for k in finals["kind"]] == ["none", "color"]
    assert np.flatnonzero(finals["redo"][1]).tolist() == [5] and not finals["redo"][0].any()


def test_building_the_data_leaves_the_global_random_stream_alone(scripted, monkeypatch):
    """Loading the generator draws initial weights; a model that builds its data on first use must
    train as it would from the cache, so the build happens on a forked stream."""
    def load(name):
        torch.randn(100)  # what building a model does
        return scripted
    monkeypatch.setattr(verifier_data, "load_checkpoint", load)
    before = torch.get_rng_state()
    load_or_build(SPEC, progress=False)
    assert scripted.builds == 1 and torch.equal(torch.get_rng_state(), before)


def test_a_cache_is_judged_again_and_rebuilt_when_a_verdict_changed(scripted):
    """``kind`` and ``redo`` of a cached final follow the current rules; a cached ``correct`` that
    the current rules contradict means the rollout labels are stale too: the data is built anew."""
    load_or_build(SPEC, progress=False)
    assert scripted.builds == 1
    folder = verifier_data.RUNS_DIR / "verifier_data"
    [path] = folder.iterdir()
    cached = torch.load(path, weights_only=False)
    cached["finals"]["kind"][0], cached["finals"]["redo"][0, 3] = 2, True  # stale reflection labels
    torch.save(cached, path)
    again = load_or_build(SPEC, progress=False)
    assert scripted.builds == 1 and again["finals"]["kind"].tolist() == [0, KINDS.index("color")]
    assert not again["finals"]["redo"][0].any()
    cached["finals"]["correct"][1] = True  # a verdict the rules do not give
    torch.save(cached, path)
    rebuilt = load_or_build(SPEC, progress=False)
    assert scripted.builds == 2 and rebuilt["finals"]["correct"].tolist() == [True, False]
    assert torch.load(path, weights_only=False)["finals"]["correct"].tolist() == [True, False]  # and saved


# --- heldout_quality -----------------------------------------------------------------------------------
def test_the_heldout_prompts_are_mostly_training_prompts():
    """The audit's count (issue 18): 102 of the cpu profile's 120 held-out prompts are also among the
    600 training prompts; all 18 others are position or color_attr prompts."""
    trained = {m["prompt"] for m in prompts(DataSpec())}
    held = prompts(DataSpec(prompts=120, seed=1))
    assert sum(m["prompt"] in trained for m in held) == 102
    assert {m["tag"] for m in held if m["prompt"] not in trained} <= {"position", "color_attr"}


def coded(values) -> torch.Tensor:
    """uint8 images whose top-left pixel is 100 · value: the stand-in judge reads its score there."""
    images = torch.zeros(len(values), 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor([round(100 * v) for v in values], dtype=torch.uint8)
    return images


class Judge:
    """A stand-in reward model: yes = clear = the coded value v, potential = 1 − v."""

    def __init__(self, task):
        self.config = SimpleNamespace(task=task, generator="raster_ar", data_spec=lambda: DataSpec())
        self.progress = []  # the t/T of each call

    def judge(self, images, captions, progress=1.0):
        assert len(captions) == len(images) and all(isinstance(c, str) for c in captions)
        self.progress.append(torch.as_tensor(progress).expand(len(images)).tolist())
        v = images[:, 0, 0, 0].float() / 100
        return {"yes": v, "clear": v, "potential": 1 - v}


SEEN, UNSEEN = "a photo of a circle", "a photo of an unseen prompt"
HELDOUT = {"finals": {"image": coded([.9, .8, .7, .2]), "caption": [SEEN, SEEN, UNSEEN, UNSEEN],
                      "correct": torch.tensor([True, False, True, False])},
           "steps": {"image": coded([.9, .3, .6, .4]), "caption": [SEEN, UNSEEN, UNSEEN, SEEN],
                     "progress": torch.tensor([.25, .5, .75, 1.]), "final": torch.tensor([True, True, False, False]),
                     "clear": torch.tensor([True, False, True, False])}}


@pytest.fixture
def heldout(monkeypatch):
    specs = []
    monkeypatch.setattr(metrics, "load_or_build", lambda spec, progress: specs.append((spec, progress)) or HELDOUT)
    return specs


def quality(q: dict, prefix: str) -> list[float]:
    return [q[f"{prefix}_{k}"] for k in ("precision", "recall", "accuracy", "auroc", "positives")]


def test_heldout_quality_on_all_prompts_and_on_the_unseen_ones(heldout):
    """Finals: yes 0.9 ✓, 0.8 ✗, 0.7 ✓, 0.2 ✗ — says yes to 3, 2 right: precision 2/3, recall 1,
    accuracy 3/4, AUROC: 0.9 beats both negatives, 0.7 only 0.2: 3/4; the unseen two alone: all 1.
    Steps (PRM: yes v; PARM: potential 1 − v) against the path outcome ✓ ✓ ✗ ✗, v = 0.9, 0.3, 0.6, 0.4:
    PRM says yes to rows 0, 2: precision 1/2, recall 1/2, accuracy 1/2, AUROC 2/4; on the unseen rows
    1, 2 (v 0.3 ✓, 0.6 ✗) all 0. PARM's potential 0.1, 0.7, 0.4, 0.6: 1/2 each; unseen (0.7 ✓, 0.4 ✗)
    all 1. PARM's clear (v) against ✓ ✗ ✓ ✗: all 1."""
    orm = metrics.heldout_quality(Judge("orm"), "cpu")
    [(spec, progress)] = heldout
    assert (spec.prompts, spec.paths, spec.rollout_prompts, spec.rollout_paths, spec.rollouts) == (120, 4, 40, 2, 4)
    assert (spec.seed, spec.sample_temperature, spec.generator, progress) == (1, 1.0, "raster_ar", False)
    assert (orm["seen_prompt_share"], orm["unseen_prompts"]) == (102 / 120, 18)
    assert quality(orm, "final") == pytest.approx([2 / 3, 1, 3 / 4, 3 / 4, 1 / 2])
    assert quality(orm, "unseen_final") == pytest.approx([1, 1, 1, 1, 1 / 2])
    assert not any(k.startswith(("step", "unseen_step", "clear")) for k in orm)
    prm_model = Judge("prm")
    prm = metrics.heldout_quality(prm_model, "cpu")
    assert prm_model.progress == [[1.] * 4, [.25, .5, .75, 1.], [1.] * 2, [.5, .75]]  # finals, steps; unseen ones
    assert quality(prm, "step") == pytest.approx([1 / 2, 1 / 2, 1 / 2, 1 / 2, 1 / 2])
    assert quality(prm, "unseen_step") == pytest.approx([0, 0, 0, 0, 1 / 2])
    assert not any(k.startswith("clear") for k in prm)
    parm = metrics.heldout_quality(Judge("parm"), "cpu")
    assert quality(parm, "step") == pytest.approx([1 / 2, 1 / 2, 1 / 2, 1 / 2, 1 / 2])
    assert quality(parm, "unseen_step") == pytest.approx([1, 1, 1, 1, 1 / 2])
    assert quality(parm, "clear") == pytest.approx([1, 1, 1, 1, 1 / 2])
    assert quality(parm, "unseen_clear") == pytest.approx([1, 1, 1, 1, 1 / 2])
    assert quality(parm, "final") == quality(orm, "final")


def test_heldout_quality_in_the_smoke_profile_uses_the_smoke_sizes(heldout):
    metrics.heldout_quality(Judge("orm"), "smoke")
    [(spec, _)] = heldout
    assert (spec.prompts, spec.paths, spec.rollout_prompts, spec.rollout_paths, spec.rollouts) == (6, 2, 3, 1, 2)
    assert (spec.seed, spec.sample_temperature) == (1, 1.0)
