"""GenEval in memory (``evaluate_generator``, ``benchmark_metrics``) on a stand-in generator whose true
score is known: it draws a scene of which its prompt is true for the prompts of two tags, and a blank
image for the rest, so every task scores exactly 1 or 0 and overall is 2/6."""

import math

import numpy as np
import pytest
import torch

from cotlab import geneval, sampling
from cotlab.metrics import to_tensor
from cotlab.preference import recipes as preference_recipes
from cotlab.sampling import Paths, benchmark_metrics, evaluate_generator, prompt_seed, row_seeds
from cotlab.shapes import TAGS, Scene, World

RIGHT_TAGS = ("single_object", "colors")
WORLD = World()
BLANK = WORLD.render(Scene((), WORLD.grid))


class ScenePaths(Paths):
    """Each path draws, from its own seed, a scene its prompt is true of (prompts of ``right``), else a
    blank image; the state is the step reached."""

    def __init__(self, captions, seeds, steps, metas, right):
        super().__init__(captions, steps, seeds, cost=2)
        self.seeds, self.metas, self.right = row_seeds(seeds, len(captions)), metas, right

    @property
    def tokens(self):
        """What ``sample`` returns as the images' source: here each path's seed."""
        return torch.tensor(self.seeds)

    def step(self, rows, shared):
        pass

    def images(self, rows=None, final=False):
        drawn = []
        for r in self.rows(rows).tolist():
            meta = self.metas[self.captions[r]]
            scene = WORLD.scene_for_prompt(meta, np.random.default_rng(self.seeds[r]))
            drawn.append(WORLD.render(scene) if meta["tag"] in self.right else BLANK)
        return to_tensor(np.stack(drawn))

    def state(self, row):
        return int(self.position[row])

    def restore(self, row, state):
        self.position[row] = state


class SceneGenerator:
    """A generator right on exactly the prompts of ``right`` (tags); it records every caption it was asked for."""

    def __init__(self, metas, right=RIGHT_TAGS):
        self.metas, self.right, self.asked = {m["prompt"]: m for m in metas}, set(right), []

    def paths(self, captions, seeds=0, steps=3):
        self.asked += captions
        return ScenePaths(captions, seeds, steps, self.metas, self.right)


def two_per_tag() -> list[dict]:
    """Two benchmark prompts of each tag, tag after tag."""
    return [m for tag in TAGS for m in [m for m in geneval.benchmark_prompts() if m["tag"] == tag][:2]]


def test_evaluate_generator_scores_a_generator_of_known_score_exactly():
    metas = two_per_tag()
    generator = SceneGenerator(metas)
    summary = evaluate_generator(generator, metas, n_samples=3, seed=5, progress=False, batch_prompts=5)
    assert summary["tags"] == {tag: 1.0 if tag in RIGHT_TAGS else 0.0 for tag in TAGS}
    assert summary["overall"] == pytest.approx(2 / 6)  # the unweighted mean of six tasks, two of them right
    assert summary["interval"]["overall"] == pytest.approx([2 / 6, 2 / 6])  # every resample sees the same
    assert summary["interval"]["single_object"] == pytest.approx([1, 1])
    assert summary["forward_passes"] == 3 * 2  # 3 steps, two passes each (the stand-in's cost)
    assert (summary["images"], summary["prompts"]) == (12 * 3, 12)
    rows = summary["rows"]
    assert [(r["index"], r["sample"]) for r in rows] == [(i, j) for i in range(12) for j in range(3)]
    assert rows[7]["filename"] == "00002/samples/0001.png" and rows[7]["prompt"] == metas[2]["prompt"]
    assert all(r["correct"] == (r["tag"] in RIGHT_TAGS) for r in rows)
    assert generator.asked == [m["prompt"] for m in metas for _ in range(3)]


def test_a_prompts_samples_depend_only_on_the_seed_and_its_index():
    """Prompt 7's images are the same whether every prompt is decoded, in batches of 5, or it alone."""
    metas = two_per_tag()
    whole = {i: r.images for i, _, r in sampling.samples(SceneGenerator(metas, TAGS), metas, 2, seed=5, batch_prompts=5)}
    ((index, _, alone),) = sampling.samples(SceneGenerator(metas, TAGS), metas, 2, seed=5, skip=lambda i: i != 7)
    assert index == 7 and np.array_equal(alone.images, whole[7])
    assert not np.array_equal(whole[7], whole[6])  # prompts 6 and 7 are both colors prompts: other seeds, other scenes


def test_benchmark_metrics_cpu_and_smoke_branches(monkeypatch):
    """The card's keys in both profiles: the cpu profile judges every benchmark prompt × 4, smoke every
    40th prompt × 1 (the benchmark cut to 12 prompts here, so that the cpu branch runs in a test)."""
    metas = two_per_tag()
    monkeypatch.setattr(geneval, "benchmark_prompts", lambda heldout=False: metas)
    for profile, asked in (("cpu", [m["prompt"] for m in metas for _ in range(4)]), ("smoke", [metas[0]["prompt"]])):
        generator = SceneGenerator(metas)
        metrics = benchmark_metrics(generator, profile)
        assert generator.asked == asked
        if profile == "cpu":
            assert metrics == {"geneval_overall": pytest.approx(2 / 6), "geneval_overall_interval": [0.3333, 0.3333],
                               "forward_passes": 6,
                               **{f"geneval_{tag}": 1.0 if tag in RIGHT_TAGS else 0.0 for tag in TAGS}}
    interval = metrics.pop("geneval_overall_interval")  # one prompt: no interval (nan), as documented
    assert metrics == {"geneval_overall": 1.0, "forward_passes": 6, "geneval_single_object": 1.0}
    assert all(math.isnan(v) for v in interval) and len(interval) == 2


def test_the_aligned_generators_evaluation_adds_the_heldout_bindings(monkeypatch):
    """``cotlab train dpo|grpo …``'s card: the benchmark's metrics, and the held-out prompts' overall
    with its interval, in the cpu branch every held-out prompt × 4 (stand-ins: the 12 prompts for the
    benchmark, their colors and position prompts for the held-out set: 1 and 0, overall 0.5)."""
    metas = two_per_tag()
    held = [m for m in metas if m["tag"] in ("colors", "position")]
    monkeypatch.setattr(geneval, "benchmark_prompts", lambda heldout=False: metas)
    monkeypatch.setattr(preference_recipes, "benchmark_prompts", lambda heldout=False: held if heldout else metas)
    generator = SceneGenerator(metas)
    metrics = preference_recipes.evaluate(generator, "cpu")
    assert len(generator.asked) == 12 * 4 + 4 * 4
    assert metrics["heldout_overall"] == pytest.approx(0.5) and metrics["heldout_overall_interval"] == [0.5, 0.5]
    assert metrics["geneval_overall"] == pytest.approx(2 / 6)
    assert set(metrics) == {"geneval_overall", "geneval_overall_interval", "forward_passes", "heldout_overall",
                            "heldout_overall_interval", *(f"geneval_{tag}" for tag in TAGS)}
