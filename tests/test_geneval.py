"""The exact detector, GenEval's rules, and the folder layout with its errors."""
import json

import numpy as np
import pytest
from PIL import Image

from cotlab import geneval
from cotlab.bench import bench_evaluator, break_scene
from cotlab.errors import CotlabError
from cotlab.shapes import TAGS, Obj, Scene, World, make_prompt
from cotlab.stats import proportion_interval

WORLD = World()


def test_detector_recovers_rendered_scenes_exactly():
    """Every object of 100 sampled scenes, its class, colour and box (within a quarter pixel)."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        scene, meta = WORLD.sample(rng)
        found, notes = geneval.detect(WORLD.render(scene), WORLD)
        got = sorted((d.shape, d.color, d.box) for d in found)
        truth = sorted((o.shape, o.color, WORLD.box(o)) for o in scene.objects)
        assert [g[:2] for g in got] == [t[:2] for t in truth] and not notes
        assert np.abs(np.array([g[2] for g in got]) - [t[2] for t in truth]).max() < 0.25  # px


def test_nearest_render_redraws_what_the_image_shows():
    rng = np.random.default_rng(1)
    for _ in range(50):
        scene, _ = WORLD.sample(rng)
        image = WORLD.render(scene).astype(float)
        nearest = geneval.nearest_render(WORLD.render(scene), WORLD).astype(float)
        assert 10 * np.log10(255**2 / max(np.mean((image - nearest) ** 2), 1e-9)) > 35  # dB
    noisy = np.clip(WORLD.render(scene) + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    assert np.abs(geneval.nearest_render(noisy, WORLD).astype(float) - image).mean() < np.abs(noisy - image).mean()


@pytest.mark.parametrize("tag", TAGS)
def test_broken_scenes_fail_with_a_reason(tag):
    rng = np.random.default_rng(1)
    for _ in range(20):
        scene, meta = WORLD.sample(rng, tag)
        broken = break_scene(scene, meta, rng, WORLD)
        ok, reason = geneval.judge(WORLD.render(broken), meta, WORLD)
        assert not ok and reason


def test_evaluator_bench_small():
    result = bench_evaluator(n=60, seed=3, progress=False)
    clean = result["clean"]
    # every other scene is edited to fail, and on clean renders every verdict and object is right
    assert clean["failing_share"] == 0.5 and clean["verdict_accuracy"] == clean["object_recovery"] == 1.0
    assert clean["interval"]["verdict_accuracy"] == proportion_interval(60, 60)
    assert clean["per_tag"] == dict.fromkeys(TAGS, 1.0)  # 10 scenes each
    assert clean["per_tag_interval"] == dict.fromkeys(TAGS, proportion_interval(10, 10))
    for kind in ("degraded", "all degradations"):
        r = result[kind]
        right = round(r["verdict_accuracy"] * 60)
        assert r["verdict_accuracy"] == right / 60 == pytest.approx(np.mean(list(r["per_tag"].values())))
        assert r["interval"]["verdict_accuracy"] == proportion_interval(right, 60) and r["failing_share"] == 0.5


def _write_folder(tmp_path, n_prompts=6):
    rng = np.random.default_rng(4)
    metas = []
    for i, tag in enumerate(TAGS[:n_prompts]):
        scene, meta = WORLD.sample(rng, tag)
        wrong = break_scene(scene, meta, rng, WORLD)
        geneval.write_prompt_folder(tmp_path, i, meta, [WORLD.render(scene), WORLD.render(wrong)])
        metas.append(meta)
    return metas


def test_score_folder(tmp_path, capsys):
    _write_folder(tmp_path)
    summary = geneval.score_folder(tmp_path, json_path=tmp_path / "summary.json")
    assert summary["tags"] == {t: 0.5 for t in TAGS}
    assert summary["overall"] == pytest.approx(0.5) and summary["any_correct"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {"filename", "tag", "prompt", "correct", "reason"} <= set(rows[0])
    assert all(r["reason"] for r in rows if not r["correct"])
    assert json.loads((tmp_path / "summary.json").read_text())["overall"] == pytest.approx(0.5)
    assert "overall" in capsys.readouterr().out


def test_score_folder_errors(tmp_path):
    with pytest.raises(CotlabError, match="not in GenEval's layout"):
        geneval.score_folder(tmp_path)
    _write_folder(tmp_path, 1)
    png = tmp_path / "00000" / "samples" / "0000.png"
    Image.new("RGB", (64, 64)).save(png)
    with pytest.raises(CotlabError, match="64x64 but the world draws 32x32"):
        geneval.score_folder(tmp_path)
    Image.new("L", (32, 32)).save(png)
    with pytest.raises(CotlabError, match="save samples as RGB"):
        geneval.score_folder(tmp_path)


def test_judge_folder_rows_and_layout_errors(tmp_path):
    metas = _write_folder(tmp_path, 2)
    (tmp_path / "12345").write_text("a stray file")  # neither it nor a non-numbered folder is a prompt
    (tmp_path / "notes").mkdir()
    rows = geneval.judge_folder(tmp_path)
    assert [(r["filename"], r["tag"], r["correct"]) for r in rows] == [
        (str(tmp_path / f"{i:05d}" / "samples" / f"{j:04d}.png"), TAGS[i], j == 0) for i in range(2) for j in range(2)]
    assert [json.loads(r["metadata"]) for r in rows] == [metas[0], metas[0], metas[1], metas[1]]
    with pytest.raises(CotlabError, match="not in GenEval's layout"):
        geneval.judge_folder(tmp_path / "missing")
    (tmp_path / "00001" / "samples" / "0001.png").unlink()
    with pytest.raises(CotlabError, match=r"00001/samples holds 1 image but 00000 holds 2: an interrupted generation\? "
                                          "run the same cotlab generate command again to finish it"):
        geneval.judge_folder(tmp_path)
    (tmp_path / "00001" / "samples" / "0000.png").unlink()
    with pytest.raises(CotlabError, match="00001/samples holds no PNG images"):
        geneval.judge_folder(tmp_path)
    (tmp_path / "00001" / "metadata.jsonl").unlink()
    with pytest.raises(CotlabError, match="00001 has no metadata.jsonl: every prompt folder needs one"):
        geneval.judge_folder(tmp_path)


def test_folders_are_judged_in_their_own_world(tmp_path):
    large = World(image_size=48)  # cells of 12 px
    meta = make_prompt("two_object", [{"class": "circle", "count": 1}, {"class": "square", "count": 1}])
    image = large.render(Scene((Obj("circle", "red", 0, 0), Obj("square", "blue", 2, 3))))
    for name in "ab":
        geneval.write_prompt_folder(tmp_path / name, 0, meta, [image])
        geneval.write_prompt_folder(tmp_path / name, 1, meta, [image])
    assert geneval.score_folder(tmp_path / "a", world=large, quiet=True)["tags"] == {"two_object": 1.0}
    comparison = geneval.compare_folders(tmp_path / "a", tmp_path / "b", large)
    assert comparison["a"]["overall"] == comparison["b"]["overall"] == 1.0


@pytest.mark.parametrize("line, message", [
    ("{not json", ":2: not valid JSON"),
    ('{"tag": "nope", "include": [], "prompt": "x"}', "unknown tag 'nope'"),
    ('{"tag": "colors", "include": [{"class": "dog", "count": 1}], "prompt": "x"}', "unknown shape 'dog'"),
    ('{"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "mauve"}], "prompt": "x"}',
     "unknown colour"),
    ('{"tag": "colors", "prompt": "x"}', "missing 'include'"),
])
def test_malformed_prompt_file_names_file_and_line(tmp_path, line, message):
    good = json.dumps(make_prompt("single_object", [{"class": "circle", "count": 1}]))
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(CotlabError, match=message) as e:
        geneval.load_metadata(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_captions_of_a_composed_scene():
    scene = Scene((Obj("circle", "red", 1, 0), Obj("square", "blue", 1, 3)))
    texts = {m["prompt"] for m in geneval.captions_of(scene)}
    assert {"a photo of a circle left of a square", "a photo of a red circle and a blue square",
            "a photo of a blue square"} <= texts
    assert "a photo of a square left of a circle" not in texts
    assert "a photo of two circles" not in texts


def test_compare_folders_gives_the_paired_difference(tmp_path, capsys):
    from cotlab.cli import main

    rng = np.random.default_rng(5)
    for i in range(12):  # two prompts per task; A draws the scene, B the same scene broken on prompt 0 only
        scene, meta = WORLD.sample(rng, TAGS[i % 6])
        wrong = break_scene(scene, meta, rng, WORLD)
        geneval.write_prompt_folder(tmp_path / "a", i, meta, [WORLD.render(scene)])
        geneval.write_prompt_folder(tmp_path / "b", i, meta, [WORLD.render(wrong if i == 0 else scene)])
    comparison = geneval.compare_folders(tmp_path / "a", tmp_path / "b")
    d = comparison["difference"]
    assert d["single_object"]["difference"] == 0.5 and d["overall"]["difference"] == pytest.approx(0.5 / 6)
    assert d["colors"] == {"difference": 0.0, "interval": [0.0, 0.0]}
    assert main(["geneval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "| colors | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] | +0.000 [+0.000, +0.000], no measurable difference |" in out
    assert json.loads((tmp_path / "c.json").read_text())["difference"]["overall"]["difference"] == pytest.approx(0.5 / 6)
    geneval.write_prompt_folder(tmp_path / "b", 12, meta, [WORLD.render(scene)])
    with pytest.raises(CotlabError, match="do not hold the same prompts and samples: a paired comparison needs "
                                          "both generated from one prompt file with the same --n-samples"):
        geneval.compare_folders(tmp_path / "a", tmp_path / "b")


def test_a_contrast_with_weights_one_and_minus_one_is_the_paired_difference():
    from cotlab.geneval import contrast, paired_difference

    rng = np.random.default_rng(0)
    rows = lambda p: [{"filename": f"{i:05d}/samples/{j:04d}.png", "tag": ("counting", "colors")[i % 2],
                       "correct": bool(rng.random() < p)} for i in range(20) for j in range(4)]
    a, b, c = rows(0.7), rows(0.4), rows(0.5)
    d = paired_difference(a, b)["overall"]
    assert contrast([a, b], (1, -1)) == {"value": pytest.approx(d["difference"]), "interval": d["interval"]}
    gaps = contrast([a, b, c, c], (1, -1, -1, 1))  # (a − b) − (c − c) = a − b
    assert gaps["value"] == pytest.approx(d["difference"])


def test_evaluator_bench_with_a_degradation_never_drawn_reports_it_without_an_interval():
    result = bench_evaluator(n=12, seed=1, progress=False)["degraded"]  # these 12 scenes never draw a colour shift
    never = [k for k, v in result["per_degradation"].items() if np.isnan(v)]
    assert never and all(np.isnan(result["per_degradation_interval"][k]).all() for k in never)
