"""The token transformer (masked and raster), its decoding, and generation in GenEval's layout.

The smoke-size transformers here read the shipped ``vq_f8`` tokens and ``clip`` text encoder."""
import numpy as np
import pytest
import torch

from cotlab.errors import CotlabError
from cotlab.generate import generate_folder
from cotlab.geneval import benchmark_prompts
from cotlab.masked_ar.decoding import MaskGITPaths, RasterPaths, mask_schedule
from cotlab.masked_ar.model import MaskedAR, MaskedARConfig, cosine_schedule
from cotlab.sampling import evaluate_generator, load_generator, sample
from cotlab.shapes import World, make_batch


@pytest.fixture(scope="module")
def batch():
    return make_batch(World(), np.random.default_rng(0), 8)


def model(order="masked", **overrides):
    torch.manual_seed(0)
    return MaskedAR(MaskedARConfig.for_profile("smoke", order=order, **overrides)).eval()


def test_schedules():
    assert cosine_schedule(torch.tensor(0.0)) == 1 and cosine_schedule(torch.tensor(1.0)).abs() < 1e-6
    for steps in (1, 4, 8, 16):
        counts = mask_schedule(steps, 16)
        assert len(counts) == steps and counts[-1] == 0
        assert all(a > b for a, b in zip([16, *counts], counts))  # every step commits at least one token


def test_shapes_and_attention_pattern(batch):
    for order in ("masked", "raster"):
        m = model(order)
        tokens = m.encode_images(batch["image"])  # (B, 16)
        assert tokens.shape == (8, 16) and 0 <= tokens.min() and tokens.max() < m.codebook_size
        text, pad = m.encode_text(batch["caption"])
        logits = m(tokens, text, pad)
        assert logits.shape == (8, 16, m.codebook_size)
        changed = tokens.clone()
        changed[:, 9] = (changed[:, 9] + 1) % m.codebook_size
        moved = (m(changed, text, pad) - logits).abs().amax(dim=(0, 2)) > 1e-6  # (16,): which positions moved
        if order == "raster":  # position i reads inputs ≤ i only
            assert not moved[:9].any() and moved[9:].all()
        else:
            assert moved.all()


@pytest.mark.parametrize("order", ["masked", "raster"])
def test_loss_falls_on_a_fixed_batch(order, batch):
    m = model(order, p_uncond=0.0).train()
    optimizer = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        torch.manual_seed(1)  # the same masks each step
        loss, logs = m.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert 0 < logs["masked_share"] <= 1


def test_maskgit_decoding_commits_tokens_and_reports_its_steps():
    m = model()
    captions = ["a photo of a red circle", "a photo of two squares"]
    result = sample(m, captions, seed=3, keep_steps=True, steps=4, cfg=2.0)
    assert result.tokens.shape == (2, 16) and result.tokens.max() < m.codebook_size  # no [MASK] left
    assert result.images.shape == (2, 3, 32, 32) and result.forward_passes == 4 * 2
    assert [int(s["masked"][0].sum()) for s in result.steps] == mask_schedule(4, 16)
    for before, after in zip(result.steps, result.steps[1:]):
        kept = ~before["masked"]  # committed after the earlier step: unchanged from then on
        assert torch.equal(after["sampled"][kept], before["sampled"][kept])
    assert torch.equal(result.steps[-1]["sampled"], result.tokens)  # the final tokens, all filled
    again = sample(m, captions, seed=3, steps=4, cfg=2.0)
    assert torch.equal(again.tokens, result.tokens) and again.steps == []
    assert sample(m, captions, steps=4, cfg=1.0).forward_passes == 4


def test_each_recorded_step_is_its_own_copy():
    result = sample(model(), ["a photo of a red circle"], seed=1, keep_steps=True, steps=4)
    first, last = result.steps[0], result.steps[-1]
    assert not torch.equal(first["sampled"], last["sampled"])  # decoding resampled the masked positions
    assert not torch.equal(first["masked"], last["masked"])
    paths = model().paths(["a photo of a red circle"], 1, steps=4)
    paths.advance()
    record = paths.record()
    kept = {key: value.clone() for key, value in record.items()}
    paths.finish()
    paths.sampled.fill_(0)  # the decoder's own tensors, changed in place: the record stays as it was
    paths.tokens.fill_(0)
    assert all(torch.equal(record[key], kept[key]) for key in kept)


def test_raster_decoding_and_wrong_uses():
    r = model("raster")
    result = sample(r, ["a photo of a blue cross"], seed=0, keep_steps=True, cfg=3.0)
    assert result.tokens.shape == (1, 16) and result.tokens.max() < r.codebook_size
    assert result.forward_passes == 16 * 2 and len(result.steps) == 16  # one step per token
    with pytest.raises(ValueError, match="RasterPaths"):
        MaskGITPaths(r, ["a photo of a blue cross"])
    with pytest.raises(ValueError, match="MaskGITPaths"):
        RasterPaths(model(), ["a photo of a blue cross"])
    with pytest.raises(ValueError, match="steps must be between 1 and the 16"):
        sample(model(), ["a photo of a blue cross"], steps=17)
    with pytest.raises(ValueError, match="unknown order"):
        MaskedARConfig(order="diagonal")


def test_raster_paths_offer_the_search_interface():
    r = model("raster")
    paths = r.paths(["a photo of a blue cross"] * 2, [1, 2])
    assert paths.steps == 16  # one step per token
    for _ in range(5):
        paths.advance()
    assert torch.equal(paths.sampled[:, :5], paths.tokens[:, :5])  # the intermediate keeps what is written
    assert paths.images().shape == (2, 3, 32, 32)
    paths.restore(1, paths.state(0))
    assert torch.equal(paths.tokens[1, :5], paths.tokens[0, :5]) and int(paths.position[1]) == 5
    paths.finish()
    assert torch.equal(paths.tokens[1, :5], paths.tokens[0, :5])  # the restored prefix stays
    assert paths.tokens.max() < r.codebook_size and paths.passes.tolist() == [32, 32]


@pytest.mark.parametrize("order", ["masked", "raster"])
def test_a_path_decodes_the_same_whoever_shares_its_batch_or_its_step(order):
    """Each path draws from its own seed's stream: seed 6 alone and between seeds 5 and 7 decodes the
    same tokens. A shared step — one forward pass for rows that hold one state, as the step search
    uses it — draws for each row what a step of its own would."""
    m, caption = model(order), "a photo of a red circle"
    alone = m.paths([caption], [6])
    alone.finish()
    together = m.paths([caption] * 3, [5, 6, 7])
    together.finish()
    assert torch.equal(together.tokens[1], alone.tokens[0])
    assert not torch.equal(together.tokens[0], together.tokens[1])  # the seeds draw differently
    shared, separate = m.paths([caption] * 3, [5, 6, 7]), m.paths([caption] * 3, [5, 6, 7])
    shared.advance(shared=True)  # every row starts from the all-[MASK] state
    separate.advance()
    assert torch.equal(shared.tokens, separate.tokens) and torch.equal(shared.sampled, separate.sampled)
    assert shared.passes.sum() < separate.passes.sum()  # and it cost one pass, not three


@pytest.mark.parametrize("order", ["masked", "raster"])
def test_images_of_some_rows(order):
    """Mid-decoding, ``images(rows)`` decodes those rows' latest samples, in the order asked."""
    m = model(order)
    paths = m.paths(["a photo of two squares"] * 3, [5, 6, 7])
    paths.advance()
    paths.advance()
    assert torch.equal(paths.images([2, 0]), m.decode_tokens(paths.sampled[[2, 0]]).cpu())


def test_generate_folder_writes_geneval_layout_and_resumes(tmp_path):
    m = model()
    metas = benchmark_prompts()[:3]
    out = generate_folder(m, metas, tmp_path / "out", n_samples=2, seed=1, save_process=True, steps=4)
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.png")}
    assert len([p for p in first if p.parts[1] == "samples"]) == 3 * 2
    assert len([p for p in first if p.parts[1] == "process"]) == 3 * 2 * 4  # every step of every sample
    (out / "00001" / "samples" / "0001.png").unlink()  # as if interrupted
    generate_folder(m, metas, out, n_samples=2, seed=1, save_process=True, steps=4)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.png")} == first  # the same images
    with pytest.raises(CotlabError, match="other settings"):
        generate_folder(m, metas, out, n_samples=2, seed=2, steps=4)
    from cotlab.geneval import score_folder
    summary = score_folder(out, quiet=True)
    assert summary["images"] == 6 and 0 <= summary["overall"] <= 1


def test_evaluate_generator_and_load_errors():
    summary = evaluate_generator(model(), benchmark_prompts()[::100], n_samples=1, steps=2, progress=False)
    assert 0 <= summary["overall"] <= 1 and summary["forward_passes"] == 2 * 2
    with pytest.raises(CotlabError, match="not a generator"):
        load_generator("vq_f8")
    with pytest.raises(CotlabError, match="cotlab train nosuch"):
        load_generator("nosuch")


def test_bench_decoding_compares_masked_steps_with_raster(tmp_path):
    from cotlab.masked_ar.bench import bench_decoding
    from cotlab.harness import save_checkpoint

    folders = [save_checkpoint(model(order), tmp_path / order, name=order, profile="smoke", command="test",
                               train_seconds=0.0, steps=0, metrics={}) for order in ("masked", "raster")]
    result = bench_decoding([str(f) for f in folders], steps=(2, 4), every=60, n_samples=1)
    rows = [(r["order"], r["steps"], r["forward_passes"]) for r in result["rows"]]
    assert rows == [("masked", 2, 4), ("masked", 4, 8), ("raster", 16, 32)]
    assert all(0 <= r["overall"] <= 1 and r["images_per_s"] > 0 for r in result["rows"])
    assert result["prompts"] == 12
    assert [(d["steps"], d["fewer_passes"]) for d in result["differences"]] == [(2, 8.0), (4, 4.0)]


def test_decoding_figure_and_viewer_show_every_step():
    import matplotlib.pyplot as plt

    from cotlab.masked_ar.figures import decoding_steps, mask_states
    from cotlab.masked_ar.viewer import DecodingViewer

    m = model()
    result = sample(m, ["a photo of a red circle"], keep_steps=True, steps=4)
    states = mask_states(result.steps)  # (4, 16)
    assert states.shape == (4, 16) and (states[-1] > 0).all()
    schedule = mask_schedule(4, 16)  # still masked after each step
    assert [int((s == 2).sum()) for s in states] == [p - n for p, n in zip([16, *schedule[:-1]], schedule)]
    fig = decoding_steps(result.steps)
    assert len(fig.axes) == 8 and fig.axes[3].get_title() == "step 4: 16/16"
    plt.close(fig)

    metas = benchmark_prompts()[:3]
    viewer = DecodingViewer(m, metas, steps=4)
    fig = viewer.render(prompt=1, seed=2, step=2)
    committed = int((mask_states(viewer.sample(1, 2).steps)[1] > 0).sum())
    assert len(fig.axes[0].texts) == committed and len(fig.axes[1].texts) == 16
    assert fig.axes[2].get_title().startswith("intermediate image, step 2")
    assert [t.get_text() for t in fig.axes[0].texts] == [t.get_text() for t in viewer.render(1, 2, 2).axes[0].texts]
    assert plt.get_fignums() == []
    with pytest.raises(CotlabError, match="step 5 is out of range: choose 1 … 4"):
        viewer.render(step=5)
    with pytest.raises(CotlabError, match="prompt 3 is out of range"):
        viewer.render(prompt=3)
    with pytest.raises(CotlabError, match="pass a masked generator"):
        DecodingViewer(model("raster"), metas)
    viewer.widget()
    viewer.slider.value = 1
    viewer.picker.value = 2
    assert (viewer.prompt, viewer.step) == (2, 1)


def test_samples_while_training_records_the_same_prompts_at_each_interval(tmp_path):
    from cotlab.sampling import SamplesWhileTraining
    from cotlab.harness import fit
    from cotlab.shapes import ShapesDataModule

    m = model()
    callback = SamplesWhileTraining(["a photo of a red circle", "a photo of two squares"], every=4, steps=2)
    fit(m, ShapesDataModule(batch_size=m.config.batch_size), profile="smoke", run_dir=tmp_path, name="live",
        callbacks=[callback], enable_progress_bar=False)
    assert sorted(callback.images) == [0, 4, 8]
    assert all(x.shape == (2, 3, 32, 32) for x in callback.images.values())
    assert not torch.equal(callback.images[0], callback.images[8])  # training changed the samples


def test_failures_regenerates_the_judged_images():
    from cotlab import geneval
    from cotlab.metrics import to_uint8
    from cotlab.sampling import failures

    m, metas = model(), benchmark_prompts()[::90]
    summary = evaluate_generator(m, metas, n_samples=2, seed=3, progress=False, steps=2)
    failed = failures(m, metas, summary["rows"], limit=3, n_samples=2, seed=3, steps=2)
    assert 0 < len(failed) <= 3 and {row["tag"] for _, row in failed} <= set(summary["tags"])
    for image, row in failed:
        meta = next(m for m in metas if m["prompt"] == row["prompt"])
        assert geneval.judge(to_uint8(image[None])[0], meta) == (False, row["reason"])
