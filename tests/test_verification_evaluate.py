"""The paper's comparison (``evaluate.compare``, ``cotlab bench verification``) on a stand-in generator
and stand-in verifiers whose every number is known.

Candidate c of every image paints, from its first step on: c = 0 nothing, c = 1 a blue circle,
c = 2 a red circle, c = 3 nothing. The prompts: "a circle" (single_object: blue and red are right),
"a red circle" (colors: only red), "two circles" (counting: nothing is), two prompts each, in the
order S, C, K, K, S, C. The verifiers rate what an image shows:

    look    CLIPScore  ORM yes  PRM yes  PARM yes  PARM potential (clear from step 1)
    blue    0.9        0.7      0.58     0.45      0.6
    red     0.8        0.8      0.60     0.9       0.3   (below θ = 0.5: pruned)
    blank   0.1        0.2      0.55     0.1       0.2   (pruned)

so, on single_object / colors / counting (overall = their mean):
baseline (c = 0) 0/0/0; CLIP best-of-N and the CLIP step search pick blue: 1/0/0 = 1/3; the ORM, the
PRM step search and the oracle pick red: 1/1/0 = 2/3; PARM keeps only blue: 1/3; PARM++ asks again,
PARM says no (0.45), the stand-in's redraw paints red, PARM says yes (0.9): 2/3."""
import contextlib
import inspect
import json
import time
from io import StringIO

import numpy as np
import pytest
import torch

from cotlab import geneval
from cotlab.cli import main
from cotlab.metrics import to_tensor
from cotlab.sampling import Paths, path_seed, row_seeds
from cotlab.shapes import Obj, Scene, World
from cotlab.stats import proportion_interval
from cotlab.verification import bench as verification_bench
from cotlab.verification.data import KINDS
from cotlab.verification import evaluate
from cotlab.verification.evaluate import STRATEGIES, parm_at

S = {"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"}
C = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": "a photo of a red circle"}
K = {"tag": "counting", "include": [{"class": "circle", "count": 2}], "exclude": [{"class": "circle", "count": 3}],
     "prompt": "a photo of two circles"}
METAS = [S, C, K, K, S, C]
N, SAMPLES, STEPS = 4, 2, 2
PAINTS = {"blank": World().render(Scene(())), "blue": World().render(Scene((Obj("circle", "blue", 1, 1),))),
          "red": World().render(Scene((Obj("circle", "red", 1, 1),)))}
CANDIDATE_LOOK = ("blank", "blue", "red", "blank")
LOOK_OF_SEED = {path_seed(0, i, j, c): CANDIDATE_LOOK[c] for i in range(len(METAS)) for j in range(SAMPLES)
                for c in range(N)}  # the bench's seeds: path c of sample j of prompt i


def look(image: torch.Tensor) -> str:
    return next(name for name, paint in PAINTS.items() if torch.allclose(image, to_tensor(paint[None])[0]))


class PaintingPaths(Paths):
    """A path paints at its first step what its seed says and keeps it; a redraw paints red and
    costs one more step."""

    def __init__(self, captions, seeds, steps):
        super().__init__(captions, steps, seeds, cost=2)
        self.seeds = row_seeds(seeds, len(captions))
        self.paint = [None] * len(captions)

    def step(self, rows, shared):
        for r in rows.tolist():
            self.paint[r] = self.paint[r] or LOOK_OF_SEED[self.seeds[r]]

    def images(self, rows=None, final=False):
        return to_tensor(np.stack([PAINTS[self.paint[r] or "blank"] for r in self.rows(rows).tolist()]))

    def state(self, row):
        return self.paint[row], int(self.position[row])

    def restore(self, row, state):
        self.paint[row], self.position[row] = state

    def redraw(self, row, cells):
        self.restore(row, ("red", self.steps - 1))


def one_caption_each(images, captions) -> None:
    assert len(captions) == len(images) and all(isinstance(c, str) for c in captions)


class Painter:
    """The stand-in generator; ``options`` records the options of each ``paths`` call."""

    def __init__(self):
        self.options = set()

    def paths(self, captions, seeds=0, steps=None, cfg=None):
        assert all(isinstance(c, str) for c in captions)
        self.options.add((steps, cfg))
        return PaintingPaths(captions, seeds, steps)


class Clip:
    def score(self, images, captions):
        one_caption_each(images, captions)
        return torch.tensor([{"blue": 90.0, "red": 80.0, "blank": 10.0}[look(x)] for x in images])


class Judge:
    """A stand-in reward model: each head's probability by what the image shows; ``progress`` records
    the t/T it was told for each batch."""

    def __init__(self, **heads):
        self.heads, self.progress = heads, []

    def judge(self, images, captions, progress=1.0):
        one_caption_each(images, captions)
        self.progress.append(torch.as_tensor(progress, dtype=torch.float).expand(len(images)).tolist())
        looks = [look(x) for x in images]
        out = {head: torch.tensor([by_look[x] for x in looks]) for head, by_look in self.heads.items()}
        return {"clear": torch.ones(len(images)), "potential": torch.zeros(len(images)),
                "kind": torch.eye(len(KINDS))[[KINDS.index("color")] * len(images)],
                "redo": torch.ones(len(images), 16), **out}


def stand_in_verifiers() -> dict:
    """New stand-ins (each records what it was asked) with the scores of the module docstring."""
    return {"clip": Clip(), "orm": Judge(yes={"blue": .7, "red": .8, "blank": .2}),
            "prm": Judge(yes={"blue": .58, "red": .6, "blank": .55}),
            "parm": Judge(yes={"blue": .45, "red": .9, "blank": .1}, potential={"blue": .6, "red": .3, "blank": .2})}


def remembered(judge):
    """``judge`` answering each (image, prompt) once: the bench judges only 3 images × 3 prompts."""
    answers = {}

    def once(image, meta, *args):
        key = (image.tobytes(), meta["prompt"])
        if key not in answers:
            answers[key] = judge(image, meta, *args)
        return answers[key]
    return once


def run_bench(tmp_path, generator: Painter, verifiers: dict) -> tuple[str, dict, dict]:
    """``cotlab bench verification --json`` on the stand-ins: (printed table, JSON result, and the full
    result of ``compare`` with its rows)."""
    path, out, full = tmp_path / "verification.json", StringIO(), {}

    def compare(*args, **kwargs):
        full.update(evaluate.compare(*args, **kwargs))
        return full

    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(verification_bench, "load_shipped",
                   lambda names, every, kind: {"maskgit": generator} if kind == "generator" else verifiers)
        mp.setattr(verification_bench, "stratified_prompts", lambda every: METAS)
        mp.setattr(verification_bench, "compare", compare)
        mp.setattr(geneval, "judge", remembered(geneval.judge))
        start = time.perf_counter()
        code = main(["bench", "verification", "--candidates", str(N), "--steps", str(STEPS),
                     "--n-samples", str(SAMPLES), "--scaling-every", "2", "--json", str(path)])
        seconds = time.perf_counter() - start
    assert code == 0 and 0 < full["seconds"] <= seconds  # compare's own time is part of the run's
    return out.getvalue(), json.loads(path.read_text()), full


def test_cotlab_bench_verification_gives_every_known_number(tmp_path):
    """One run (a few seconds: the AUROC bootstraps) and every number it makes, each check below
    with its hand computation."""
    generator = Painter()
    verifiers = stand_in_verifiers()
    printed, result, full = run_bench(tmp_path, generator, verifiers)
    assert generator.options == {(STEPS, 3.0)}  # every search decodes with the bench's steps and cfg
    check_table(result)
    check_differences(result)
    check_scaling(result)
    check_quality(result)
    check_parm_facts(result)
    check_printed(printed, result)
    check_rows(full["rows"])
    for name in ("prm", "parm"):  # the step images are judged at t/T: 4 watched paths at step 1, then at 2
        assert [p for p in verifiers[name].progress if len(set(p)) > 1] == [[.5] * 4 + [1.] * 4] * len(METAS)


def check_rows(rows: dict) -> None:
    """Each image judged once per strategy, named as GenEval's folders name it, with the exact
    evaluator's verdict and reason (the oracle picks blue, red and nothing on S, C and K)."""
    picked = {"single_object": "blue", "colors": "red", "counting": "blank"}
    assert list(rows) == list(STRATEGIES)
    assert rows["oracle"] == [{"filename": f"{i:05d}/samples/{j:04d}.png", "index": i, "sample": j, "tag": m["tag"],
                               "prompt": m["prompt"], "correct": m["tag"] != "counting",
                               "reason": geneval.judge(PAINTS[picked[m["tag"]]], m)[1]}
                              for i, m in enumerate(METAS) for j in range(SAMPLES)]


def test_compare_called_bare_runs_what_the_bench_runs():
    """N = 20, 4 samples, 8 steps, cfg 3, seed 0, the step searches' curves on every 3rd prompt."""
    ours = inspect.signature(evaluate.compare).parameters
    bench = inspect.signature(verification_bench.bench_verification).parameters
    for mine, theirs in (("n_samples", "n_samples"), ("N", "candidates"), ("scaling_every", "scaling_every"),
                         ("steps", "steps"), ("cfg", "cfg"), ("seed", "seed")):
        assert ours[mine].default == bench[theirs].default, mine
    assert ours["scaling"].default == (1, 2, 4, 8, 16, 20) and ours["rounds"].default == 3


THIRD, TWO_THIRDS = 1 / 3, 2 / 3
TABLE = {  # strategy: (single_object, colors, counting, passes / image, verifier calls / image)
    "baseline": (0, 0, 0, STEPS * 2, 0),
    "clip": (1, 0, 0, N * STEPS * 2, N),  # every path decoded, every final scored
    "orm": (1, 1, 0, N * STEPS * 2, N),
    "clip-prm": (1, 0, 0, STEPS * 2, N * STEPS),  # one shared pass a step, N images scored a step
    "prm": (1, 1, 0, STEPS * 2, N * STEPS),
    "parm": (1, 0, 0, (1 + 2 + 1 + 1) * 2, N + 1),  # only blue runs both steps; 4 looks, 1 final
    "parm++": (1, 1, 0, (1 + 2 + 1 + 1 + 1) * 2, N + 1 + 2),  # + the redraw's step; + 2 judgements
    "oracle": (1, 1, 0, N * STEPS * 2, N),
}


def check_table(result):
    assert list(result["table"]) == list(STRATEGIES)
    for name, (single, colors, counting, passes, calls) in TABLE.items():
        row = result["table"][name]
        overall = (single + colors + counting) / 3  # the unweighted mean of the tags present
        assert (row["single_object"], row["colors"], row["counting"]) == (single, colors, counting), name
        assert row["overall"] == pytest.approx(overall) and row["interval"]["overall"] == pytest.approx([overall] * 2)
        assert (row["passes"], row["calls"], row["images"]) == (passes, calls, len(METAS) * SAMPLES), name


def check_differences(result):
    overall = {name: sum(v[:3]) / 3 for name, v in TABLE.items()}
    got = {(d["a"], d["b"]): (d["difference"], d["interval"]) for d in result["differences"]}
    assert list(got) == [("clip", "baseline"), ("orm", "baseline"), ("clip-prm", "baseline"), ("prm", "baseline"),
                         ("parm", "baseline"), ("parm++", "baseline"), ("oracle", "baseline"), ("orm", "clip"),
                         ("prm", "clip-prm"), ("prm", "orm"), ("parm", "orm"), ("parm++", "parm"), ("oracle", "orm")]
    for (a, b), (difference, interval) in got.items():  # every image the same in each resample: no spread
        d = overall[a] - overall[b]
        assert difference == pytest.approx(d) and interval == pytest.approx([d, d], abs=1e-12), (a, b)


def check_scaling(result):
    """n = 1 is candidate 0 (nothing) for all; at n = 2 blue is there, red only at n = 4. The step
    searches' curves below N run on every 2nd prompt (S, K, S: single_object and counting only), at
    N = 4 on all."""
    expected = {"clip": (0, THIRD, THIRD), "orm": (0, THIRD, TWO_THIRDS), "clip-prm": (0, 1 / 2, THIRD),
                "prm": (0, 1 / 2, TWO_THIRDS), "parm": (0, THIRD, THIRD), "oracle": (0, THIRD, TWO_THIRDS)}
    assert list(result["scaling"]) == list(expected)
    for name, curve in expected.items():
        assert result["scaling"][name] == pytest.approx(dict(zip(("1", "2", "4"), curve))), name


def check_quality(result):
    """Finals: 48 = 6 prompts × 2 samples × 4 — 24 blank, 12 blue, 12 red; right: blue and red on
    single_object (4 + 4), red on colors (4): 12 positives. Negatives (36): 24 blank, 8 blue, 4 red.
    CLIPScore (blue 0.9 > red 0.8 > blank): says yes to 24, 12 right: precision 1/2, recall 1;
    AUROC = (4 blue · (28 + 8/2) + 8 red · (24 + 4/2)) / (12 · 36) = 336/432 = 7/9.
    ORM, PRM and PARM rank red > blue > blank: (4 · (24 + 8/2) + 8 · (32 + 4/2)) / 432 = 8/9. PRM says
    yes to all (≥ 0.5): precision 12/48; PARM only to red: 8 of 12 right, recall 8/12.
    Steps: paths 0 and 1 of each sample, both steps: 24 blank (path ends wrong), 24 blue (ends right
    on single_object: 8). Blue above blank: AUROC (24 + 16/2)/40 = 0.8; PRM says yes to all."""
    expected = {("CLIPScore (zero-shot)", "final"): (1 / 2, 1, 3 / 4, 7 / 9, 1 / 4),
                ("ORM", "final"): (1 / 2, 1, 3 / 4, 8 / 9, 1 / 4),
                ("PRM", "final"): (1 / 4, 1, 1 / 4, 8 / 9, 1 / 4),
                ("PARM", "final"): (2 / 3, 2 / 3, 5 / 6, 8 / 9, 1 / 4),
                ("CLIPScore (zero-shot)", "step"): (1 / 3, 1, 2 / 3, 0.8, 1 / 6),
                ("PRM", "step"): (1 / 6, 1, 1 / 6, 0.8, 1 / 6),
                ("PARM", "step"): (1 / 3, 1, 2 / 3, 0.8, 1 / 6)}
    got = {(name, kind): q for name, by_kind in result["quality"].items() for kind, q in by_kind.items()}
    assert set(got) == set(expected)
    for key, values in expected.items():
        q = got[key]
        assert [q[k] for k in ("precision", "recall", "accuracy", "auroc", "positives")] == pytest.approx(values), key
    assert got[("PARM", "final")]["interval"]["precision"] == pytest.approx(proportion_interval(8, 12))
    assert got[("PARM", "final")]["interval"]["recall"] == pytest.approx(proportion_interval(8, 12))


def check_parm_facts(result):
    """PARM keeps 1 of 4 paths (blue) in every search; the paths run 1, 2, 1, 1 of 2 steps: 5/8."""
    parm = result["parm"]
    assert (parm["mean_kept"], parm["none_kept"], parm["steps_run_share"]) == (1.0, 0, pytest.approx(5 / 8))
    assert parm["clear_at"] == [[1] * N] * 12 and parm["steps_run"] == [[1, 2, 1, 1]] * 12
    assert result["settings"] == dict(prompts=6, n_samples=SAMPLES, N=N, steps=STEPS, cfg=3.0, seed=0,
                                      scaling_every=2, rounds=3)
    assert result["generator"] == "maskgit" and "rows" not in result


def check_printed(printed, result):
    assert (f"| {STRATEGIES['parm++']} | 1.000 | nan | 0.000 | 1.000 | nan | nan | **0.667 [0.667, 0.667]** | 0.70 "
            f"| 12 | 7.0 |") in printed
    assert f"| {STRATEGIES['prm']} − {STRATEGIES['orm']} | " in printed
    assert f"| {STRATEGIES['parm']} | 0.00 [0.00, 0.00] | 0.33 [0.33, 0.33] | 0.33 [0.33, 0.33] |" in printed
    assert "| PARM | final images | 0.667 [" in printed
    assert "PARM kept 1.0 of 4 paths on average (it pruned every path in 0 of 12 searches" in printed
    assert "ran 62% of their steps" in printed
    assert printed.strip() == verification_bench.format_verification(result).strip()


# --- PARM at n, read off a run over N ----------------------------------------------------------------
def test_parm_at_n_is_the_best_survivor_among_the_first_n_else_the_most_promising():
    trace = {"pruned": np.array([True, False, True, False, False]), "potential": np.array([.3, .6, .45, .9, .7])}
    yes = np.array([.99, .2, .95, .8, .85])
    assert [parm_at(trace, yes, n) for n in (1, 2, 3, 4, 5)] == [0, 1, 1, 3, 4]  # pruned 0 and 2 never win
    none_kept = {"pruned": np.ones(4, bool), "potential": np.array([.1, np.nan, .4, .3])}
    assert [parm_at(none_kept, yes, n) for n in (1, 2, 3, 4)] == [0, 0, 2, 2]  # nan: never judged clear


# --- the reward viewer on the same stand-ins ---------------------------------------------------------
def test_the_reward_viewer_shows_what_each_verifier_says_and_follows_its_controls():
    """Sample 0's candidates of the bench (the same seeds): the viewer opens on the first prompt whose
    candidates end both right and wrong, its trace holds each verifier's known score per candidate
    and step, and each control's change redraws the figure for the new prompt, candidate and step."""
    from cotlab.verification.viewer import RewardViewer

    viewer = RewardViewer(Painter(), stand_in_verifiers(), [K, S, C], candidates=N, steps=STEPS)
    assert (viewer.prompt, viewer.candidate, viewer.step) == (1, 0, STEPS)  # K: none right; S: blue, red right
    trace = viewer.trace(1)
    assert np.allclose(trace["clip"], [[.1] * 2, [.9] * 2, [.8] * 2, [.1] * 2])
    assert np.allclose(trace["prm"], [[.55] * 2, [.58] * 2, [.6] * 2, [.55] * 2])
    assert np.allclose(trace["potential"], [[.2] * 2, [.6] * 2, [.3] * 2, [.2] * 2])
    assert trace["verdict"].tolist() == [[False] * 2, [True] * 2, [True] * 2, [False] * 2]
    assert trace["orm"].tolist() == pytest.approx([.2, .7, .8, .2])
    assert trace["parm_yes"].tolist() == pytest.approx([.1, .45, .9, .1])
    assert trace["parm++"].chosen == 1 and len(trace["parm++"].trace["rounds"]) == 1
    assert look(trace["parm++"].image) == "red"  # blue kept by PARM, redrawn red by PARM++

    drawn = []
    render = viewer.render

    def spy(*args, **kwargs):
        fig = render(*args, **kwargs)
        drawn.append((viewer.prompt, viewer.candidate, viewer.step, fig.axes[0].get_title(), fig.axes[0].get_xlabel()))
        return fig

    viewer.render = spy
    viewer.widget()
    viewer.path_slider.value = 2
    viewer.slider.value = 1
    viewer.picker.value = 2  # "a red circle": blue is wrong there
    viewer.path_slider.value = 1
    assert [d[:4] for d in drawn] == [(1, 0, 2, "path 0, step 2 ✗"), (1, 2, 2, "path 2, step 2 ✓"),
                                      (1, 2, 1, "path 2, step 1 ✓"), (2, 2, 1, "path 2, step 1 ✓"),
                                      (2, 1, 1, "path 1, step 1 ✗")]
    assert drawn[2][4] == ("CLIPScore 0.80   PRM 0.60\nPARM clear 1.00, potential 0.30\n"
                           "PARM pruned it at step 1")
    assert drawn[4][4] == "CLIPScore 0.90   PRM 0.58\nPARM clear 1.00, potential 0.60\nPARM kept it"
