"""The Shapes world: rendering, prompts true of their scenes, and a reproducible stream."""
import numpy as np
import pytest
import torch

from cotlab import geneval
from cotlab.shapes import (BACKGROUND, COLORS, GENEVAL_TAG_COUNTS, HELDOUT_BINDINGS, PALETTE, SHAPES,
                           TAGS, Obj, Scene, ShapesStream, World, all_prompts, counterfactual,
                           is_heldout, make_batch, sample_prompt)


def test_public_constants():
    assert {"circle", "square", "triangle"} <= set(SHAPES)
    assert {"red", "green", "blue", "yellow"} <= set(COLORS) and len(COLORS) >= 6
    assert all(len(PALETTE[c]) == 3 for c in COLORS) and len(BACKGROUND) == 3


def test_render_shape_and_background():
    world = World()
    img = world.render(Scene(()))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert (img == np.array(BACKGROUND, np.uint8)).all()


@pytest.mark.parametrize("size", [32, 48, 64, 128])
def test_any_size(size):
    world = World(image_size=size)
    scene, meta = world.sample(np.random.default_rng(0), "counting")
    img = world.render(scene)
    assert img.shape == (size, size, 3)
    assert geneval.judge(img, meta, world)[0]


def test_bad_size_names_the_fix():
    with pytest.raises(ValueError, match="multiple of grid"):
        World(image_size=30)


def test_different_shapes_never_draw_the_same_pixels():
    """The calibration found a small circle drawn pixel-identical to a square; the antialiased
    renderer must keep every pair of shapes apart, at the smallest size and any jitter."""
    world = World()
    rng = np.random.default_rng(0)
    for _ in range(200):
        o = world.random_object(rng, "circle", "red", (1, 2))
        o = Obj(**{**vars(o), "size": world.sizes[0]})
        images = [world.render(Scene((Obj(**{**vars(o), "shape": s}),))) for s in SHAPES]
        for i in range(len(SHAPES)):
            for j in range(i + 1, len(SHAPES)):
                assert not np.array_equal(images[i], images[j])


@pytest.mark.parametrize("tag", TAGS)
def test_prompts_are_true_of_their_scenes(tag):
    world = World()
    rng = np.random.default_rng(1)
    for _ in range(100):
        scene, meta = world.sample(rng, tag)
        assert meta["tag"] == tag
        assert geneval.truth(scene, meta, world) == (True, "")
        assert len({(o.row, o.col) for o in scene.objects}) == len(scene.objects)  # one per cell


def test_counterfactuals_are_minimal_changes():
    rng = np.random.default_rng(2)
    for tag in TAGS:
        meta = sample_prompt(rng, tag)
        other = counterfactual(meta, rng)
        assert other["tag"] == tag and other["prompt"] != meta["prompt"]
        assert len(other["prompt"].split()) == len(meta["prompt"].split())


def test_training_prompts_never_name_heldout_bindings():
    rng = np.random.default_rng(3)
    prompts = [sample_prompt(rng) for _ in range(3000)]
    assert not any(is_heldout(m) for m in prompts)
    named = {(r["color"], r["class"]) for m in prompts for r in m["include"] if "color" in r}
    assert not named & HELDOUT_BINDINGS


def test_benchmark_file_is_reproducible_and_in_geneval_proportions(tmp_path):
    import importlib.util
    from cotlab.io import DATA_DIR
    spec = importlib.util.spec_from_file_location("mk", DATA_DIR / "geneval_shapes" / "make_prompts.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    mk.main(tmp_path)
    for name in ("evaluation_metadata.jsonl", "heldout_metadata.jsonl"):
        assert (tmp_path / name).read_text() == (DATA_DIR / "geneval_shapes" / name).read_text()
    bench = geneval.benchmark_prompts()
    assert len(bench) >= 550
    assert {t: sum(m["tag"] == t for m in bench) for t in TAGS} == GENEVAL_TAG_COUNTS
    assert not any(is_heldout(m) for m in bench)
    held = geneval.benchmark_prompts(heldout=True)
    assert held and all(is_heldout(m) for m in held)


def test_every_prompt_has_geneval_schema():
    for tag in TAGS:
        for m in all_prompts(tag):
            geneval.validate_metadata(m, "test")
            assert m["prompt"].startswith("a photo of ")


def test_stream_is_reproducible_and_distinct_per_rank():
    world = World()
    a = next(iter(ShapesStream(world, 8, seed=5, rank=0)))
    b = next(iter(ShapesStream(world, 8, seed=5, rank=0)))
    c = next(iter(ShapesStream(world, 8, seed=5, rank=1)))
    assert torch.equal(a["image"], b["image"]) and a["caption"] == b["caption"]
    assert not torch.equal(a["image"], c["image"])
    assert a["image"].shape == (8, 3, 32, 32) and 0 <= a["image"].min() <= a["image"].max() <= 1


def test_stream_is_distinct_per_worker():
    from torch.utils.data import DataLoader
    stream = ShapesStream(World(), 4, seed=0, limit=1)
    batches = list(DataLoader(stream, batch_size=None, num_workers=2))
    assert len(batches) == 2 and not torch.equal(batches[0]["image"], batches[1]["image"])


def test_make_batch_metadata():
    batch = make_batch(World(), np.random.default_rng(0), 5)
    assert len(batch["caption"]) == len(batch["meta"]) == len(batch["scene"]) == 5
    assert all(m["prompt"] == c for m, c in zip(batch["meta"], batch["caption"]))
    assert Scene.from_dict(batch["scene"][0].to_dict()) == batch["scene"][0]
