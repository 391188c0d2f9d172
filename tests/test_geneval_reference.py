"""GenEval's numbers against known answers: the rules on hand-built detections, the detector on scenes
whose objects are known, the overall as the unweighted task mean, and the intervals against a brute force
that draws prompts, then samples, one at a time from the same generator."""
import math

import numpy as np
import pytest

from cotlab import geneval
from cotlab.geneval import Detection, Verdict, check, contrast, evaluate, intervals, paired_difference, relative_position
from cotlab.shapes import BACKGROUND, TAGS, Obj, Scene, World, all_prompts, make_prompt
from cotlab.stats import quantile_interval

WORLD = World()
PROMPTS = [m for tag in TAGS for m in all_prompts(tag)]


def box(x0, y0, x1, y1):
    """A detection of no consequence but its box."""
    return Detection("circle", "red", (x0, y0, x1, y1), 1.0)


# --- relative_position: GenEval's margin, worked by hand ---------------------------------------
def test_position_margin_by_hand():
    # two 10-px boxes side by side: margin 0.1 · (10 + 10) = 2 px off |dx|, then dx' = −(|dx| − 2) / |dx|,
    # "left of" when dx' < −0.5, i.e. |dx| > 4
    a = (0, 0, 10, 10)
    assert relative_position(a, (4, 0, 14, 10)) == set()  # dx' = −2 / 4 = −0.5 exactly: not left of
    assert relative_position(a, (4.1, 0, 14.1, 10)) == {"left of"}  # dx' = −2.1 / 4.1 = −0.512
    assert relative_position((4.1, 0, 14.1, 10), a) == {"right of"}
    assert relative_position(a, (2, 0, 12, 10)) == set()  # |dx| = margin: nothing left
    assert relative_position(a, (1, 0, 11, 10)) == set()  # within the margin
    assert relative_position((4, 0, 14, 10), a) == set() and relative_position((0, 4, 10, 14), a) == set()  # +0.5
    assert relative_position(a, (0, 4.1, 10, 14.1)) == {"above"}  # y points down
    assert relative_position((0, 4.1, 10, 14.1), a) == {"below"}
    assert relative_position(a, (0, 4, 10, 14)) == set()


def test_position_divides_by_the_offset_before_the_margin():
    # offset (−6, −8), |offset| = 10; margin 2 on each axis: (−4, −6) / 10 = (−0.4, −0.6): above only
    # (dividing by |(−4, −6)| = 7.2 instead would give (−0.55, −0.83): left of and above)
    assert relative_position((-5, -5, 5, 5), (1, 3, 11, 13)) == {"above"}
    # offset (−24, −24) of 5.6-px boxes: margin 1.12, (−22.88, −22.88) / 33.94 = −0.674 on both axes
    assert relative_position((1.2, 1.2, 6.8, 6.8), (25.2, 25.2, 30.8, 30.8)) == {"left of", "above"}


def test_position_margin_takes_each_axis_from_its_own_sides():
    # tall thin boxes 2 wide, 20 high, 1 px apart: margin along x is 0.1 · (2 + 2) = 0.4, so
    # dx' = −0.6 / 1 (with the heights, 0.1 · 40 = 4, nothing would be left)
    assert relative_position((0, 0, 2, 20), (1, 0, 3, 20)) == {"left of"}
    assert relative_position((0, 0, 20, 2), (0, 1, 20, 3)) == {"above"}
    # 2.5-px boxes 1.5 px apart: margin 0.5, dx' = −1 / 1.5 = −0.667 (a revised offset of 1 px still counts)
    assert relative_position((0, 0, 2.5, 2.5), (1.5, 0, 4, 2.5)) == {"left of"}


# --- check: GenEval's clauses ------------------------------------------------------------------
def test_count_is_exact_by_the_exclude_clause():
    meta = make_prompt("counting", [{"class": "circle", "count": 3}])  # exclude: fewer than 4 circles
    circles = [Detection("circle", "red", (8 * i, 0, 8 * i + 5, 5), 1.0 - 0.1 * i) for i in range(4)]
    square = Detection("square", "red", (0, 20, 5, 25), 1.0)
    assert check(circles[:2] + [square], meta) == Verdict(False, ["expected 3 circle, found 2"], ["count"],
                                                         circles[:2], lacking=True)
    assert check(circles[:3] + [square], meta) == Verdict(True, [], [], circles[:3])
    assert check(circles + [square], meta) == Verdict(False, ["expected fewer than 4 circle, found 4"], ["count"],
                                                      circles[:3])
    assert evaluate(circles, meta) == (False, "expected fewer than 4 circle, found 4")
    two = make_prompt("counting", [{"class": "circle", "count": 2}])
    assert check(circles[:1], two).kinds == ["count"]  # one of two is a wrong count, not a missing object
    assert evaluate(circles[:2], {"exclude": [{"class": "circle", "count": 2}]}) == (
        False, "expected fewer than 2 circle, found 2")  # a prompt may hold an exclude clause alone


def test_a_missing_object_is_missing_not_a_count():
    meta = make_prompt("two_object", [{"class": "triangle", "count": 1}, {"class": "square", "count": 1}])
    square = Detection("square", "blue", (0, 0, 5, 5), 0.9)
    assert check([square], meta) == Verdict(False, ["expected 1 triangle, found 0"], ["missing"], [square],
                                            lacking=True)
    reversed_meta = make_prompt("two_object", [{"class": "square", "count": 1}, {"class": "triangle", "count": 1}])
    assert check([square], reversed_meta).kept == [square]  # kept from the clause before the missing one


def test_colour_is_that_of_the_top_count_detections():
    meta = make_prompt("colors", [{"class": "circle", "count": 1, "color": "blue"}])
    red, blue = (Detection("circle", c, (0, 0, 5, 5), conf) for c, conf in (("red", 0.9), ("blue", 0.8)))
    assert check([red, blue], meta) == Verdict(False, ["expected blue circle, found 1 red"], ["color"], [])
    assert check([blue, red], meta) == Verdict(True, [], [], [blue])
    two_red = {"tag": "colors", "prompt": "two red circles", "include": [{"class": "circle", "count": 2, "color": "red"}]}
    assert check([red, blue, red], two_red) == Verdict(False, ["expected red circle, found 1 red, 1 blue"], ["color"],
                                                       [red])
    assert check([red, red, blue], two_red).correct


def test_every_failing_clause_is_reported():
    meta = make_prompt("color_attr", [{"class": "circle", "count": 1, "color": "red"},
                                      {"class": "square", "count": 1, "color": "green"}])
    found = [Detection("circle", "blue", (0, 0, 5, 5), 1.0), Detection("square", "red", (9, 0, 14, 5), 1.0)]
    assert evaluate(found, meta) == (False, "expected red circle, found 1 blue; expected green square, found 1 red")
    assert evaluate([], meta) == (False, "expected 1 circle, found 0; expected 1 square, found 0")
    right_circle = Detection("circle", "red", (0, 0, 5, 5), 1.0)
    assert check([right_circle, found[1]], meta).kept == [right_circle]  # the clause that holds keeps its object


def test_position_clause_at_and_past_the_margin():
    meta = make_prompt("position", [{"class": "square", "count": 1},
                                    {"class": "circle", "count": 1, "position": ["left of", 0]}])
    square = Detection("square", "red", (20, 0, 30, 10), 1.0)
    at, past = (Detection("circle", "blue", (x, 0, x + 10, 10), 1.0) for x in (16, 15.9))  # |dx| = 4 and 4.1
    assert check([square, past], meta) == Verdict(True, [], [], [square, past])
    assert check([square, at], meta) == Verdict(False, ["expected circle left of square, found it level with"],
                                                ["position"], [square], lacking=True)
    right = Detection("circle", "blue", (40, 0, 50, 10), 1.0)
    assert evaluate([square, right], meta) == (False, "expected circle left of square, found it right of")
    assert check([past], meta) == Verdict(False, ["expected 1 square, found 0", "no target for circle to be left of"],
                                          ["missing", "position"], [], lacking=True)
    right_of = make_prompt("position", [{"class": "square", "count": 1},
                                        {"class": "circle", "count": 1, "position": ["right of", 0]}])
    up_left = Detection("circle", "blue", (0, -20, 10, -10), 1.0)
    assert evaluate([square, up_left], right_of) == (False, "expected circle right of square, found it above and left of")
    both = {"tag": "position", "prompt": "two circles left of a square",
            "include": [{"class": "square", "count": 1}, {"class": "circle", "count": 2, "position": ["left of", 0]}]}
    assert not check([square, past, right], both).correct  # every one of the circles must hold
    assert check([square, past, up_left], both).correct  # up and left of it is left of it too


def test_ground_truth_is_a_perfect_detector():
    assert geneval.ground_truth(CORNERS, WORLD) == [Detection(o.shape, o.color, WORLD.box(o), 1.0)
                                                    for o in CORNERS.objects]


# --- the detector on scenes whose objects are known ---------------------------------------------
CORNERS = Scene((Obj("circle", "red", 0, 0), Obj("square", "blue", 0, 3), Obj("triangle", "green", 3, 0),
                 Obj("cross", "white", 3, 3)))


def test_detector_finds_known_objects_where_they_are():
    found, notes = geneval.detect(WORLD.render(CORNERS), WORLD)
    assert not notes and len(found) == 4
    truth = {(o.shape, o.color): WORLD.box(o) for o in CORNERS.objects}
    for d in found:
        assert d.box == pytest.approx(truth[d.shape, d.color], abs=0.2)  # px


def test_prompts_true_of_the_corner_scene_by_hand():
    # a red circle, blue square, green triangle and white cross in the four corners: 4 single objects,
    # 12 ordered pairs, no count, 4 colours, 12 colour pairs; positions: each of 4 side pairs holds one
    # relation each way (8), each of 2 diagonal pairs two relations each way (8): 48 of the 460 prompts
    true = [m["prompt"] for m in PROMPTS if geneval.truth(CORNERS, m, WORLD)[0]]
    assert len(true) == 48 and {"a photo of a circle left of a square", "a photo of a cross below a circle",
                                "a photo of a cross right of a circle", "a photo of a white cross"} <= set(true)
    found, _ = geneval.detect(WORLD.render(CORNERS), WORLD)
    assert [m["prompt"] for m in PROMPTS if evaluate(found, m)[0]] == true


def test_detector_counts_and_excludes_on_a_rendered_scene():
    three = Scene((Obj("circle", "red", 0, 1), Obj("circle", "blue", 2, 2), Obj("circle", "red", 3, 0),
                   Obj("square", "green", 1, 3)))
    found, _ = geneval.detect(WORLD.render(three), WORLD)
    counts = {n: evaluate(found, make_prompt("counting", [{"class": "circle", "count": n}]))[0] for n in (2, 3, 4)}
    assert counts == {2: False, 3: True, 4: False}


def test_touching_objects_are_cut_along_the_grid():
    touching = Scene((Obj("square", "red", 1, 1, size=1.0), Obj("square", "green", 1, 2, size=1.0)))
    found, _ = geneval.detect(WORLD.render(touching), WORLD)  # one blob 16 px wide
    assert [(d.shape, d.color) for d in found] == [("square", "red"), ("square", "green")]
    assert [b for d in found for b in d.box] == pytest.approx([8, 8, 16, 16, 16, 8, 24, 16], abs=0.1)


def test_an_object_over_a_cell_line_stays_whole():
    # a 6.4-px square shifted 2.4 px: it crosses into three neighbouring cells, yet is one blob of one cell's size
    square = Obj("square", "red", 1, 1, dx=0.3, dy=0.3, size=0.8)
    found, notes = geneval.detect(WORLD.render(Scene((square,))), WORLD)
    assert len(found) == 1 and not notes and found[0].box == pytest.approx(WORLD.box(square), abs=0.1)


def test_blobs_that_are_no_shape_are_noted_and_specks_ignored():
    image = np.empty((32, 32, 3), np.uint8)
    image[:] = BACKGROUND
    image[5, 5] = (220, 40, 40)  # one pixel: mass 1 < 2.5, noise
    assert geneval.detect(image, WORLD) == ([], [])
    image[8:16, 8:10] = image[14:16, 8:16] = (40, 180, 70)  # an L of 28 px
    found, notes = geneval.detect(image, WORLD)
    # its centroid: 16 px of the upright at (9, 12) and 12 of the foot at (13, 15): (10.7, 13.3)
    assert found == [] and len(notes) == 1 and notes[0].startswith("an unrecognised green blob at (11, 13) (best fit:")
    ok, reason = geneval.judge(image, make_prompt("single_object", [{"class": "triangle", "count": 1}]), WORLD)
    assert not ok and reason == "expected 1 triangle, found 0; " + notes[0]
    image[24:31, 24:31] = (220, 40, 40)  # a red square beside the L: a right verdict carries no notes
    assert geneval.judge(image, make_prompt("single_object", [{"class": "square", "count": 1}]), WORLD) == (True, "")


def test_nearest_render_reproduces_a_clean_render_pixel_for_pixel():
    # sizes and tones the detector recovers exactly (two dimmed to 0.9: the fitted tone brings them back)
    scene = Scene((Obj("circle", "red", 2, 1, size=0.7, tone=0.9), Obj("square", "blue", 0, 3, size=0.85),
                   Obj("triangle", "red", 3, 3, size=0.75), Obj("cross", "white", 1, 0, size=0.8, tone=0.9)))
    image = WORLD.render(scene)
    assert np.array_equal(geneval.nearest_render(image, WORLD), image)  # PSNR ∞
    empty = np.full_like(image, BACKGROUND)
    assert np.array_equal(geneval.nearest_render(empty, WORLD), empty)


def test_nearest_render_clips_the_fitted_tone():
    # a circle drawn at tone 0.4 comes back at 0.5, one at 1.35 at 1.2: the tones a generator may draw
    for color, tone, clipped in (("red", 0.4, 0.5), ("green", 1.35, 1.2)):
        drawn, expected = (WORLD.render(Scene((Obj("circle", color, 1, 1, tone=t),))) for t in (tone, clipped))
        assert np.array_equal(geneval.nearest_render(drawn, WORLD), expected)


def test_nearest_render_in_other_worlds():
    small = World(image_size=16, grid=2)
    image = small.render(Scene((Obj("circle", "red", 0, 0), Obj("square", "blue", 1, 1, size=0.75)), grid=2))
    assert np.array_equal(geneval.nearest_render(image, small), image)
    large = World(image_size=48)  # cells of 12 px: the default world would cut the square apart
    image = large.render(Scene((Obj("circle", "red", 0, 0), Obj("square", "blue", 2, 3))))
    assert np.abs(geneval.nearest_render(image, large).astype(int) - image).max() <= 1
    two = make_prompt("two_object", [{"class": "circle", "count": 1}, {"class": "square", "count": 1}])
    assert geneval.judge(image, two, large) == (True, "")


def test_shape_moments_by_hand():
    # centroid below the box centre and ⟨ρ²⟩, in half-sizes: circle 0 and 1/2; square 0 and 1/3 + 1/3;
    # triangle (width v + 1 at height v, area 2): E v = 1/3, var v = 1/3 − 1/9, E u² = ∫(v+1)³/24 = 1/6,
    # so 1/6 + 2/9 = 7/18; cross (bars 0.72 wide, area 2.3616): E x² = (0.062208 + 0.48 − 0.022395) / 2.3616
    dy, spread = geneval._shape_moments()
    assert dy == pytest.approx({"circle": 0, "square": 0, "triangle": 1 / 3, "cross": 0}, abs=2e-3)
    assert spread == pytest.approx({"circle": 1 / 2, "square": 2 / 3, "triangle": 7 / 18,
                                    "cross": 2 * 0.51981312 / 2.3616}, abs=2e-3)


def test_palette_directions_by_hand():
    # red (220, 40, 40) − background (24, 24, 28) = (196, 16, 12), of length √38816 = 197.02
    directions = geneval._directions()
    assert directions.shape == (6, 3) and np.allclose(np.linalg.norm(directions, axis=1), 1)
    assert directions[0] == pytest.approx(np.array([196, 16, 12]) / math.sqrt(38816), abs=1e-6)
    white = np.array([235, 235, 235]) - np.array(BACKGROUND)
    assert directions[5] == pytest.approx(white / np.linalg.norm(white), abs=1e-6)


# --- the overall: the unweighted mean of the task means ---------------------------------------
def rows_of(correct: dict[str, list[list[bool]]]) -> list[dict]:
    """Judged rows from {tag: per prompt, its samples' verdicts}, named as evaluate_generator names them."""
    rows, index = [], 0
    for tag, prompts in correct.items():
        for samples in prompts:
            rows += [{"filename": f"out/{index:05d}/samples/{j:04d}.png", "tag": tag, "correct": bool(c)}
                     for j, c in enumerate(samples)]
            index += 1
    return rows


# per task: prompts × samples, the share right
UNEVEN = rows_of({
    "single_object": [[1, 1], [1, 1]],  # 4 images: 1
    "two_object": [[1], [0], [0], [0]],  # 4 images: 0.25
    "counting": [[1, 0, 1, 0, 0]] * 2,  # 10 images: 0.4
    "colors": [[1, 0], [0, 1], [1, 0], [0, 1], [0, 0], [1, 1]],  # 12 images: 0.5
    "position": [[0, 0], [0, 0], [0, 0]],  # 6 images: 0
    "color_attr": [[1, 1, 1], [1, 1, 1]],  # 6 images: 1
})


def test_overall_is_the_unweighted_mean_of_the_six_tasks():
    # (1 + 0.25 + 0.4 + 0.5 + 0 + 1) / 6 = 0.525, where the share of all images is (4+1+4+6+0+6) / 42 = 0.5
    scores = geneval.summarize_scores(UNEVEN)
    assert scores == {"tags": {"single_object": 1.0, "two_object": 0.25, "counting": 0.4, "colors": 0.5,
                               "position": 0.0, "color_attr": 1.0}, "overall": pytest.approx(0.525, abs=1e-12)}
    summary = geneval.summarize(UNEVEN)
    assert summary["overall"] == pytest.approx(0.525, abs=1e-12) and summary["tags"] == scores["tags"]
    # 42 images of 2 + 4 + 2 + 6 + 3 + 2 = 19 prompts; all but 3 of two_object, 1 of colors, 3 of position
    # have an image right: 12 of 19
    assert (summary["images"], summary["prompts"]) == (42, 19) and summary["any_correct"] == pytest.approx(12 / 19)
    assert summary["interval"] == intervals(UNEVEN)
    assert geneval.summarize_scores(rows_of({"colors": [[1, 0]], "position": [[0]]}))["overall"] == 0.25


def test_summary_of_nothing():
    assert geneval.summarize([]) == {"tags": {}, "overall": 0.0, "interval": {}, "images": 0, "prompts": 0,
                                     "any_correct": 0.0}


# --- intervals: a brute force from the same generator ------------------------------------------
def brute_force_tasks(row_sets: list[list[dict]], resamples: int, seed: int) -> dict[str, np.ndarray]:
    """{tag: (sets, resamples)}: per resample, a task's prompts drawn with replacement, then each drawn
    prompt's n samples drawn with replacement, one at a time, scored; a task of one prompt is nan."""
    rng = np.random.default_rng(seed)
    out = {}
    for tag in TAGS:
        samples: dict[str, list[str]] = {}
        for r in row_sets[0]:
            if r["tag"] == tag:
                _, prompt, _, sample = r["filename"].split("/")
                samples.setdefault(prompt, []).append(sample)
        prompts = sorted(samples)
        if len(prompts) < 2:
            if prompts:
                out[tag] = np.full((len(row_sets), resamples), np.nan)
            continue
        drawn = rng.integers(len(prompts), size=(resamples, len(prompts)))
        u = rng.random((resamples, len(prompts), max(len(s) for s in samples.values())))
        scores = np.zeros((len(row_sets), resamples))
        for k, rows in enumerate(row_sets):
            verdict = {r["filename"]: r["correct"] for r in rows}
            for b in range(resamples):
                right = total = 0
                for i, p in enumerate(drawn[b]):
                    names = sorted(samples[prompts[p]])
                    for s in range(len(names)):
                        right += verdict[f"out/{prompts[p]}/samples/{names[int(u[b, i, s] * len(names))]}"]
                        total += 1
                scores[k, b] = right / total
        out[tag] = scores
    return out


def assert_same_intervals(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, interval in expected.items():
        assert got[key] == pytest.approx(interval, abs=1e-12, nan_ok=True), key


def test_intervals_match_the_brute_force():
    tasks = brute_force_tasks([UNEVEN], resamples=30, seed=4)
    expected = {tag: quantile_interval(s[0], 0.8) for tag, s in tasks.items()}
    expected["overall"] = quantile_interval(np.mean([s[0] for s in tasks.values()], 0), 0.8)
    assert_same_intervals(intervals(UNEVEN, resamples=30, seed=4, level=0.8), expected)


def test_default_intervals_are_2000_resamples_from_seed_0_at_95_percent():
    rows = rows_of({"colors": [[1, 0, 0], [1], [0, 1]], "counting": [[1, 1], [0, 0], [1, 0, 0, 0]]})
    tasks = brute_force_tasks([rows], resamples=2000, seed=0)
    expected = {tag: quantile_interval(s[0]) for tag, s in tasks.items()}
    expected["overall"] = quantile_interval(np.mean([s[0] for s in tasks.values()], 0))
    assert_same_intervals(intervals(rows), expected)


def test_a_task_of_one_prompt_has_no_interval_and_neither_has_overall():
    ci = intervals(rows_of({"colors": [[1, 0]], "position": [[0], [1]]}), resamples=50)
    assert math.isnan(ci["colors"][0]) and math.isnan(ci["overall"][1])
    assert ci["position"] == pytest.approx(quantile_interval(brute_force_tasks(
        [rows_of({"colors": [[1, 0]], "position": [[0], [1]]})], 50, 0)["position"][0]), abs=1e-12)


def flipped(rows: list[dict], on: set[str]) -> list[dict]:
    """The same rows, every verdict of the tags in ``on`` flipped."""
    return [{**r, "correct": r["correct"] != (r["tag"] in on)} for r in rows]


def test_paired_difference_and_contrast_match_the_brute_force():
    a, b = UNEVEN, flipped(UNEVEN, {"counting", "colors"})
    c = flipped(UNEVEN, {"single_object"})
    tasks = brute_force_tasks([a, b, c], resamples=25, seed=2)
    d = paired_difference(a, b, resamples=25, seed=2, level=0.9)
    for tag in TAGS:
        share = lambda rows: np.mean([r["correct"] for r in rows if r["tag"] == tag])  # noqa: E731
        assert d[tag]["difference"] == pytest.approx(share(a) - share(b), abs=1e-12)
        assert d[tag]["interval"] == pytest.approx(quantile_interval(tasks[tag][0] - tasks[tag][1], 0.9), abs=1e-12)
    overall = np.mean([s[0] - s[1] for s in tasks.values()], 0)
    # counting 0.4 → 0.6 and colors 0.5 → 0.5: overall differs by −0.2 / 6
    assert d["overall"]["difference"] == pytest.approx(-0.2 / 6, abs=1e-12)
    assert d["overall"]["interval"] == pytest.approx(quantile_interval(overall, 0.9), abs=1e-12)
    weights = (0.5, 2.0, -1.0)
    got = contrast([a, b, c], weights, resamples=25, seed=2, level=0.9)
    # overall of a: 0.525, of b: 0.525 + 0.2/6, of c: 0.525 − 1/6
    assert got["value"] == pytest.approx(0.5 * 0.525 + 2 * (0.525 + 0.2 / 6) - (0.525 - 1 / 6), abs=1e-12)
    combined = np.mean([np.dot(weights, s) for s in tasks.values()], 0)
    assert got["interval"] == pytest.approx(quantile_interval(combined, 0.9), abs=1e-12)


def test_sets_of_other_samples_are_refused():
    with pytest.raises(ValueError, match="set 1 differs from set 0"):
        paired_difference(UNEVEN, UNEVEN[:-1])
    with pytest.raises(ValueError, match="set 2 differs from set 0"):
        contrast([UNEVEN, UNEVEN, UNEVEN[1:]], (1, 1, 1))


def test_identical_sets_differ_by_exactly_nothing():
    d = paired_difference(UNEVEN, [dict(r) for r in UNEVEN], resamples=50)
    assert d == {tag: {"difference": 0.0, "interval": [0.0, 0.0]} for tag in [*TAGS, "overall"]}
    assert contrast([UNEVEN, UNEVEN], (1, -1), resamples=50) == {"value": 0.0, "interval": [0.0, 0.0]}


def test_a_constant_shift_is_measured_exactly():
    # A is wrong on every position image and B right: position differs by −1 on every resample, the
    # other tasks by 0, so overall by −1/6 on every resample
    a, b = UNEVEN, flipped(UNEVEN, {"position"})
    d = paired_difference(a, b, resamples=50)
    assert d["position"] == {"difference": -1.0, "interval": [-1.0, -1.0]}
    assert d["overall"] == {"difference": pytest.approx(-1 / 6, abs=1e-12), "interval": [pytest.approx(-1 / 6)] * 2}
    assert contrast([a, b], (2, -2), resamples=50)["interval"] == [pytest.approx(-2 / 6)] * 2


def test_contrast_scales_with_its_weights():
    one = contrast([UNEVEN], (1,), resamples=40, seed=1)
    three = contrast([UNEVEN], (3,), resamples=40, seed=1)
    assert one == {"value": pytest.approx(0.525), "interval": pytest.approx(intervals(UNEVEN, 40, 1)["overall"])}
    assert three["value"] == pytest.approx(3 * 0.525) and three["interval"] == pytest.approx(3 * np.array(one["interval"]))
    with pytest.raises(ValueError):
        contrast([UNEVEN, UNEVEN], (1,))
