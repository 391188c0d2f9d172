"""The linear DiT of notebook 04: its flow-matching loss, its sampling paths (checked on a velocity
field whose exact solution is known), and SANA 1.5's growth and block importance.

The smoke-size models read the shipped ``dcae_f8`` autoencoder and ``clip`` text encoder."""
from types import SimpleNamespace

import pytest
import torch

from cotlab.dit.decoding import FlowPaths, make_scheduler
from cotlab.dit.model import SanaConfig, SanaDiT
from cotlab.dit.scaling import Healing, block_importance, grow, inference_scaling, prune, tournament, with_blocks, zero_output
from cotlab.sampling import sample
from cotlab.shapes import ShapesStream, World


def dit(**overrides) -> SanaDiT:
    torch.manual_seed(0)
    return SanaDiT(SanaConfig.for_profile("smoke", **overrides)).eval()


@pytest.fixture(scope="module")
def batch():
    return next(iter(ShapesStream(World(), 8, seed=0)))


def inputs(model, batch, seed=0):
    """Noisy latents, times and text states for a forward pass."""
    g = torch.Generator().manual_seed(seed)
    z = model.encode_images(batch["image"])
    sigma = torch.rand(len(z), generator=g)
    x = (1 - sigma[:, None, None, None]) * z + sigma[:, None, None, None] * torch.randn(z.shape, generator=g)
    return (x, sigma, *model.encode_text(batch["caption"]))


class PointMass:
    """A stand-in 'model' whose data distribution is one latent x_0: the exact velocity of the flow
    path through x_0 is v(x, σ) = (x − x_0)/σ, and every exact ODE solver lands on x_0."""

    def __init__(self, target: torch.Tensor):
        self.target, self.device, self.latent_shape = target, torch.device("cpu"), tuple(target.shape)
        self.config = SimpleNamespace(sample_shift=3.0)
        self.calls = 0

    def prefix(self, captions, cfg):
        n = len(captions) * (1 if cfg == 1.0 else 2)
        return torch.zeros(n, 1, 1), torch.ones(n, 1)

    def guided_velocity(self, x, sigma, prefix, cfg):
        self.calls += 1
        return (x - self.target) / sigma[:, None, None, None]

    def decode_latents(self, z):
        return z


def test_the_model_predicts_a_velocity_per_latent_and_learns(batch):
    model = dit()
    x, sigma, text, mask = inputs(model, batch)
    assert model(x, sigma, text, mask).shape == x.shape == (8, 32, 4, 4)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    first = model.loss(batch)[0].item()
    for _ in range(30):
        loss = model.loss(batch)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.manual_seed(0)
    assert model.loss(batch)[0].item() < 0.8 * first


@pytest.mark.parametrize("solver,steps", [("euler", 1), ("euler", 7), ("dpm", 5)])
def test_both_solvers_land_on_the_exact_solution(solver, steps):
    target = torch.randn(2, 3, 3)
    paths = FlowPaths(PointMass(target), ["a", "b"], [1, 2], steps=steps, cfg=3.0, solver=solver)
    paths.finish()
    assert torch.allclose(paths.tokens, target.expand(2, -1, -1, -1), atol=1e-4)
    assert paths.passes.tolist() == [2 * steps] * 2 and paths.done().all()


def test_the_schedulers_grid_runs_from_noise_to_data():
    for solver in ("euler", "dpm"):
        sigmas = make_scheduler(solver, 10, shift=3.0).sigmas
        assert sigmas[0] > 0.99 and sigmas[-1] == 0 and len(sigmas) == 11 and (sigmas.diff() < 0).all()
    with pytest.raises(ValueError, match="unknown solver"):
        make_scheduler("heun", 10)


def test_paths_at_different_steps_and_restored_states_sample_what_lockstep_samples():
    """Rows advanced one at a time, and a state copied into another row mid-way, end where rows
    advanced together end (the multistep solver's memory travels with the state)."""
    model = dit()
    captions = ["a red circle", "two blue squares"]
    together = sample(model, captions, [5, 6], steps=6, solver="dpm").tokens
    paths = model.paths(captions, [5, 6], steps=6, solver="dpm")
    paths.advance([0])
    paths.advance([0])
    paths.advance([1])
    paths.finish([1])
    paths.finish([0])
    assert torch.allclose(paths.tokens, together, atol=1e-5)
    branch = model.paths([captions[0]] * 2, [5, 9], steps=6, solver="dpm")
    branch.advance([0])
    branch.advance([0])
    branch.copy_state(0, [1])
    assert branch.position.tolist() == [2, 2]
    branch.finish()
    assert torch.allclose(branch.tokens[1], together[0], atol=1e-5)


def test_images_show_the_predicted_clean_image_then_the_final_one():
    model = dit()
    result = sample(model, ["a red circle"], 0, keep_steps=True, steps=3)
    assert len(result.steps) == 3 and result.images.shape == (1, 3, 32, 32)
    assert torch.allclose(result.steps[-1]["image"], result.images, atol=1e-5)  # at σ = 0, x̂_0 is the sample
    assert result.forward_passes == 6


def test_a_grown_model_computes_exactly_what_the_shallow_one_did(batch):
    shallow = dit(layers=2)
    with torch.no_grad():
        for p in shallow.parameters():
            p.add_(0.05 * torch.randn_like(p))  # not the initial weights: trained-like
    deep = grow(shallow, 5)
    assert deep.config.layers == 5 and len(deep.transformer.transformer_blocks) == 5
    x = inputs(shallow, batch)
    with torch.no_grad():
        assert torch.equal(deep(*x), shallow(*x))
        # and the new blocks are not dead: their non-output weights are random, so training moves them
        assert deep.transformer.transformer_blocks[4].attn1.to_q.weight.abs().sum() > 0


def test_block_importance_is_zero_for_an_identity_block_and_pruning_keeps_the_important(batch):
    model = dit(layers=3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    zero_output(model.transformer.transformer_blocks[1])
    importance = block_importance(model, batch["image"], batch["caption"])
    assert importance.shape == (3,)
    assert importance[1].abs() < 1e-6 and (importance[[0, 2]] > 1e-4).all()
    pruned = prune(model, importance, keep=2)
    x = inputs(model, batch)
    with torch.no_grad():
        assert torch.allclose(pruned(*x), model(*x), atol=1e-5)  # only the identity block went
        assert torch.equal(with_blocks(model, [0, 1, 2])(*x), model(*x))
    with pytest.raises(ValueError, match="more than"):
        grow(model, 3)


def test_the_tournament_picks_the_highest_score_in_n_minus_one_comparisons():
    g = torch.Generator().manual_seed(0)
    for n in range(1, 20):
        scores = torch.rand(n, generator=g)
        winner, comparisons = tournament(scores)
        assert winner == int(scores.argmax()) and comparisons == n - 1
    assert tournament(torch.tensor([0.0, 1.0, 1.0, 0.0])) == (1, 3)  # a tie goes to the earlier entrant


def test_inference_scaling_with_the_oracle_is_any_correct_in_the_group():
    """Known answer: choosing by the exact evaluator, a group of n counts as right when any of its n
    samples is; choosing by a score that ignores the image, the choice is the group's first sample."""
    from cotlab.geneval import benchmark_prompts, judge, summarize
    from cotlab.metrics import to_uint8
    from cotlab.sampling import samples
    from cotlab.verification.search import oracle_scorer

    model = dit()
    metas = benchmark_prompts()[::100]
    constant = lambda images, captions, progress: torch.zeros(len(images))  # noqa: E731
    result = inference_scaling(model, {"oracle": oracle_scorer({m["prompt"]: m for m in metas}), "constant": constant},
                               metas, N=4, ns=(1, 2, 4), steps=2)
    correct = [[judge(x, meta)[0] for x in to_uint8(r.images)] for _, meta, r in samples(model, metas, 4, steps=2)]
    for n in (1, 2, 4):
        rows = [{"filename": f"{i:05d}/samples/{g:04d}.png", "tag": metas[i]["tag"], "correct": any(c[g * n:(g + 1) * n])}
                for i, c in enumerate(correct) for g in range(4 // n)]
        assert result["curves"]["oracle"]["top-1"][str(n)]["overall"] == pytest.approx(summarize(rows)["overall"])
        assert result["curves"]["oracle"]["tournament"][str(n)]["overall"] == pytest.approx(summarize(rows)["overall"])
        first = [{**r, "correct": correct[int(r["filename"][:5])][int(r["filename"][-8:-4]) * n]} for r in rows]
        assert result["curves"]["constant"]["top-1"][str(n)]["overall"] == pytest.approx(summarize(first)["overall"])
        assert result["curves"]["constant"]["top-1"][str(n)]["gain_over_one"]["difference"] == 0
        assert result["curves"]["oracle"]["tournament"][str(n)]["calls"] == n - 1


def test_minutes_to_loss_reads_the_running_mean():
    from cotlab.dit.bench import minutes_to_loss

    curve = [(0.5 * i, v) for i, v in enumerate([4, 3, 2, 1, 1, 1])]
    assert minutes_to_loss(curve, 2.5, window=2) == 1.0  # (3 + 2) / 2 = 2.5 at the third point
    assert minutes_to_loss(curve, 0.5, window=2) is None


def test_bench_attention_times_both_kernels_and_fits_slopes():
    from cotlab.dit.bench import bench_attention, format_attention, log_log_slope

    assert log_log_slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    result = bench_attention((64, 128), softmax_max=64, heads=2, head_dim=8, repeats=1)
    kinds = [(r["kernel"], r["tokens"]) for r in result["rows"]]
    assert kinds == [("linear", 64), ("softmax", 64), ("linear", 128)]
    assert all(r["seconds"] > 0 and (r["peak_bytes"] is None or r["peak_bytes"] >= 0) for r in result["rows"])
    assert "softmax / linear" in format_attention(result)


def test_bench_dit_on_a_saved_checkpoint(tmp_path):
    from cotlab.dit.bench import bench_dit, format_dit
    from cotlab.harness import save_checkpoint

    folder = save_checkpoint(dit(), tmp_path / "tiny", name="tiny", profile="smoke", command="test", train_seconds=6.0,
                             steps=3, metrics={}, history={"train_loss": [(0, 2.0), (1, 1.5), (2, 1.2)]})
    result = bench_dit([str(folder)], every=200, n_samples=1)
    (row,) = result["rows"]
    assert (row["solver"], row["steps"], row["forward_passes"]) == ("euler", 20, 40)
    assert result["training"][str(folder)]["images_per_s"] == pytest.approx(3 * 16 / 6.0)
    assert result["heldout"][0]["prompts"] == len(range(0, 124, 200))
    assert "held-out bindings" in format_dit(result)


def test_bench_throughput_takes_a_training_step_apart_and_leaves_the_weights(tmp_path):
    from cotlab.dit.bench import bench_throughput, format_throughput, training_step_seconds
    from cotlab.harness import save_checkpoint

    f8, f4 = dit(), dit(autoencoder="dcae_f4")
    before = {k: v.clone() for k, v in f8.state_dict().items()}
    batch = next(iter(ShapesStream(World(), 2, seed=0)))
    seconds = training_step_seconds(f8, batch, repeats=1)
    assert seconds["encode_s"] > 0 and seconds["step_s"] > 0
    assert all(torch.equal(before[k], v) for k, v in f8.state_dict().items())  # learning rate 0: nothing moves
    assert not f8.training  # handed back in eval mode

    folders = [str(save_checkpoint(m, tmp_path / name, name=name, profile="smoke", command="test", train_seconds=1.0,
                                   steps=1, metrics={})) for name, m in (("f8", f8), ("f4", f4))]
    result = bench_throughput(folders, batch_size=2, repeats=1)
    by = {r["autoencoder"]: r for r in result["rows"]}
    assert (by["dcae_f8"]["tokens"], by["dcae_f4"]["tokens"]) == (16, 64) and result["reference"] == folders[1]
    for r in result["rows"]:
        assert r["images_per_s"]["cached"] == pytest.approx(2 / r["step_s"])
        assert r["images_per_s"]["encoding"] == pytest.approx(2 / (result["render_s"] + r["encode_s"] + r["step_s"]))
    assert by["dcae_f4"]["speedup"] == {"encoding": 1.0, "cached": 1.0}
    assert by["dcae_f8"]["speedup"]["cached"] == pytest.approx(by["dcae_f4"]["step_s"] / by["dcae_f8"]["step_s"])
    assert "cached latents" in format_throughput(result)


def test_healing_fits_the_full_models_velocity_on_the_same_noisy_input(batch):
    """Known answers: a pruned model that keeps every block computes what the full one does, so its
    healing loss is exactly 0; with a block gone, the loss is the MSE to the full model's velocity at
    the very x_σ, σ and caption the pruned model saw (the same random draws as flow matching's)."""
    full = dit(layers=3)
    with torch.no_grad():
        for p in full.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(1)
    assert Healing.of(with_blocks(full, [0, 1, 2]), full).loss(batch)[0] == 0
    healing = Healing.of(with_blocks(full, [0, 2]), full)
    torch.manual_seed(1)
    loss, _ = healing.loss(batch)
    torch.manual_seed(1)
    x, sigma, text, mask, _, _ = healing.noised(batch)
    with torch.no_grad():
        expected = ((healing(x, sigma, text, mask) - full(x, sigma, text, mask)) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and loss > 0
    loss.backward()  # the pruned model trains; the full one stays frozen and out of its parameters
    assert healing.transformer.transformer_blocks[0].attn1.to_q.weight.grad is not None
    assert not {id(p) for p in healing.parameters()} & {id(p) for p in full.parameters()}


def test_bench_growth_and_scaling_run_on_a_saved_checkpoint(tmp_path):
    """The code that writes the growth and scaling tables, end to end on a tiny model."""
    import json

    from cotlab.dit.bench import bench_growth, bench_scaling, format_growth, format_scaling
    from cotlab.harness import save_checkpoint

    folder = str(save_checkpoint(dit(layers=2), tmp_path / "tiny", name="tiny", profile="smoke", command="test",
                                 train_seconds=5.0, steps=20, metrics={}))
    growth = bench_growth(folder, steps=2, every=300, n_samples=1, profile="smoke")
    assert growth["growth"]["layers"] == [2, 4] and len(growth["pruning"]["depths"]) == 1
    assert growth["pruning"]["fine_tune_steps"] == 2 and "grown model" in format_growth(growth)
    assert list(growth["pruning"]["fine_tunes"]) == ["flow matching", "the full model"]
    scaling = json.loads(json.dumps(bench_scaling(folder, every=300, N=2)))  # as stored
    assert set(scaling["curves"]) == {"clip", "orm", "oracle"} and scaling["ns"] == [1, 2]
    oracle_auroc = scaling["quality"]["oracle"]["auroc"]
    assert oracle_auroc == 1.0 or oracle_auroc != oracle_auroc  # the evaluator ranks itself perfectly (nan: one class)
    within = scaling["quality"]["oracle"]["within_prompt"]
    assert within["prompts"] == 0 or within["auroc"] == 1.0  # and within each prompt
    assert "tournament" in format_scaling(scaling)


def test_the_flow_viewer_shows_a_step_and_answers_its_controls():
    from cotlab.dit.viewer import FlowViewer
    from cotlab.errors import CotlabError
    from cotlab.geneval import benchmark_prompts

    viewer = FlowViewer(dit(), benchmark_prompts()[:3], steps=3)
    figure = viewer.render(prompt=1, seed=0, step=2)
    assert len(figure.axes) == 3 and "σ =" in figure.axes[0].get_title()
    assert len(viewer._sampled) == 1 and viewer.render(prompt=1, seed=0, step=3) and len(viewer._sampled) == 1  # cached
    viewer.widget()
    viewer.slider.value = 1
    viewer.picker.value = 2
    assert (viewer.prompt, viewer.step) == (2, 1)
    with pytest.raises(CotlabError, match="step 4 is out of range"):
        viewer.render(step=4)
    with pytest.raises(CotlabError, match="needs prompts"):
        FlowViewer(dit(), [])


def test_the_model_saves_and_loads_as_a_diffusers_pipeline_that_draws_the_same_images(tmp_path):
    from cotlab.dit.pipeline import ShapesSanaPipeline, to_pipeline

    model = dit()
    captions, seeds = ["a photo of a red circle", "a photo of two blue squares"], [5, 6]
    expected = sample(model, captions, seeds, steps=3, cfg=4.5)
    to_pipeline(model).save_pretrained(tmp_path / "pipe")
    assert {p.name for p in (tmp_path / "pipe").iterdir()} >= {"model_index.json", "transformer", "vae", "text_encoder",
                                                                "tokenizer", "scheduler"}
    pipe = ShapesSanaPipeline.from_pretrained(tmp_path / "pipe")
    noise = torch.stack([torch.randn(model.latent_shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    images = pipe(captions, num_inference_steps=3, guidance_scale=4.5, latents=noise).images
    assert torch.allclose(images, expected.images, atol=2e-3)
    assert not torch.allclose(pipe(captions, num_inference_steps=3, guidance_scale=1.0, latents=noise).images,
                              expected.images, atol=2e-3)  # guidance is applied, not ignored
