"""Next-X prediction (notebook 03): the five entities, the block-causal mask and teacher forcing's
mask, the KV cache, the loss, the SDE step, and the sampling paths (passes, ground-truth context).

The smoke-size models read the shipped ``dcae_f8`` autoencoder and ``clip`` text encoder."""
import pytest
import torch

from cotlab.flow import euler_maruyama_step
from cotlab.sampling import sample
from cotlab.xar.decoding import cfg_ramp, flow_grid
from cotlab.xar.entities import ENTITIES, Layout
from cotlab.xar.model import XAR, XARConfig


def xar(**overrides) -> XAR:
    torch.manual_seed(0)
    return XAR(XARConfig.for_profile("smoke", **overrides)).eval()


def scrambled(model: XAR) -> XAR:
    """The model with random weights everywhere (its zero-initialised output layers would hide every
    dependence)."""
    torch.manual_seed(1)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model


def inputs(model: XAR, batch: int = 2):
    g = torch.Generator().manual_seed(0)
    L, C = model.layout.length, model.latent_channels
    return (torch.randn(batch, L, C, generator=g), torch.rand(batch, L, generator=g), model.positions,
            torch.randn(batch, 16, model.text_width, generator=g), torch.ones(batch, 16))


# --- entities ---------------------------------------------------------------------------------------
def test_the_entities_cut_a_4x4_grid_as_drawn_by_hand():
    grid = torch.arange(16).reshape(4, 4)  # flat positions
    groups = lambda layout: [sorted(layout.order[layout.entity[:16] == n].tolist()) for n in range(layout.entities)]
    assert groups(Layout("cell")) == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    assert groups(Layout("subsample")) == [[0, 2, 8, 10], [1, 3, 9, 11], [4, 6, 12, 14], [5, 7, 13, 15]]
    assert groups(Layout("token")) == [[p] for p in grid.reshape(-1).tolist()]
    assert groups(Layout("image")) == [list(range(16))]
    assert (Layout("scale").entities, Layout("scale").length) == (3, 21)


@pytest.mark.parametrize("kind", ENTITIES)
def test_tokens_and_latents_round_trip(kind):
    z = torch.randn(3, 32, 4, 4)
    layout = Layout(kind)
    tokens = layout.to_tokens(z)
    assert tokens.shape == (3, layout.length, 32)
    assert torch.equal(layout.to_latent(tokens), z)
    assert torch.equal(layout.partial_latent(tokens, layout.entities), z)


def test_the_scale_entity_is_the_latent_averaged_coarse_to_fine():
    z = torch.randn(2, 32, 4, 4)
    tokens = Layout("scale").to_tokens(z)
    torch.testing.assert_close(tokens[:, 0], z.mean(dim=(2, 3)))  # 1×1: the mean
    torch.testing.assert_close(tokens[:, 1], z[:, :, :2, :2].mean(dim=(2, 3)))  # 2×2: top-left quarter's mean
    partial = Layout("scale").partial_latent(tokens, 1)  # after the first entity: the mean everywhere
    torch.testing.assert_close(partial, z.mean(dim=(2, 3), keepdim=True).expand_as(z))


def test_an_unknown_entity_names_the_choices():
    with pytest.raises(ValueError, match="token, cell, subsample, scale, image"):
        XARConfig.for_profile("smoke", entity="patch")


# --- attention ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["token", "cell", "scale"])
def test_no_entity_sees_a_later_one(kind):
    model = scrambled(xar(entity=kind))
    x, t, positions, text, text_mask = inputs(model)
    mask = model.layout.block_causal_mask()
    out, _ = model(x, t, positions, text, text_mask, mask)
    for k in range(model.layout.entities - 1):
        later = model.layout.entity > k
        changed = x.clone()
        changed[:, later] += 1.0
        out2, _ = model(changed, t, positions, text, text_mask, mask)
        assert torch.equal(out2[:, ~later], out[:, ~later])  # entities ≤ k: exactly as before
        assert not torch.allclose(out2[:, later], out[:, later])  # later ones did change


def test_inside_an_entity_attention_is_bidirectional():
    model = scrambled(xar(entity="cell"))
    x, t, positions, text, text_mask = inputs(model)
    mask = model.layout.block_causal_mask()
    out, _ = model(x, t, positions, text, text_mask, mask)
    last_of_first = (model.layout.entity == 0).nonzero()[-1, 0]
    changed = x.clone()
    changed[:, last_of_first] += 1.0
    out2, _ = model(changed, t, positions, text, text_mask, mask)
    assert not torch.allclose(out2[:, 0], out[:, 0])  # the first token sees the entity's last one


def test_under_teacher_forcing_a_noisy_entity_sees_clean_earlier_entities_but_never_its_own_clean_copy():
    model = scrambled(xar(entity="cell"))
    x, t, positions, text, text_mask = inputs(model)
    L, layout = model.layout.length, model.layout
    clean = torch.randn_like(x)
    mask = layout.teacher_forcing_mask()
    run = lambda c: model(torch.cat([c, x], 1), torch.cat([torch.zeros_like(t), t], 1), positions.repeat(2), text,
                          text_mask, mask)[0][:, L:]
    out = run(clean)
    for k in range(layout.entities):
        changed = clean.clone()
        changed[:, layout.entity == k] += 1.0  # the clean copy of entity k
        out2 = run(changed)
        assert torch.equal(out2[:, layout.entity <= k], out[:, layout.entity <= k])
        if k < layout.entities - 1:
            assert not torch.allclose(out2[:, layout.entity > k], out[:, layout.entity > k])


def test_the_kv_cache_gives_what_the_whole_sequence_gives():
    model = scrambled(xar(entity="cell", layers=2))
    x, t, positions, text, text_mask = inputs(model)
    layout = model.layout
    full, _ = model(x, t, positions, text, text_mask, layout.block_causal_mask())
    for k in range(1, layout.entities):
        before, current = layout.entity < k, layout.entity == k
        _, cache = model(x[:, before], t[:, before], positions[before], text, text_mask,
                         layout.block_causal_mask()[before][:, before])
        part, _ = model(x[:, current], t[:, current], positions[current], text, text_mask, None, cache)
        torch.testing.assert_close(part, full[:, current], atol=1e-4, rtol=1e-4)


# --- training -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noisy_context", [True, False])
def test_the_loss_falls_on_a_fixed_batch(noisy_context):
    torch.manual_seed(0)
    model = XAR(XARConfig.for_profile("smoke", noisy_context=noisy_context, width=64, layers=2))
    g = torch.Generator().manual_seed(0)
    batch = {"latent": torch.randn(8, 32, 4, 4, generator=g), "text": torch.randn(8, 16, 128, generator=g),
             "text_mask": torch.ones(8, 16, dtype=torch.long)}
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        torch.manual_seed(len(losses) % 4)  # the same four draws of t and ε, over and over
        loss, _ = model.loss(batch)
        optimizer.zero_grad(), loss.backward(), optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(2.0, rel=0.1)  # v = 0 at first: E‖ε − x_0‖² = 2 per element
    assert sum(losses[-4:]) / 4 < 0.6 * losses[0]


# --- sampling ---------------------------------------------------------------------------------------------
def test_euler_maruyama_keeps_the_marginals_of_the_flow():
    """Data at one point x_0 = 0: x_σ = σ·ε, the exact velocity v = x/σ; the SDE from σ = 1 must keep
    Var x = σ² all the way down (within sampling error)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g)
    grid = torch.linspace(1.0, 0.2, 200).tolist()
    for sigma, next_sigma in zip(grid[:-1], grid[1:]):
        x = euler_maruyama_step(x, x / sigma, sigma, next_sigma, torch.randn(20000, generator=g))
    assert x.var().item() == pytest.approx(0.2 ** 2, rel=0.05)


def test_the_guidance_ramp_and_the_grids():
    assert [cfg_ramp(3.0, k, 4) for k in range(4)] == pytest.approx([1.0, 5 / 3, 7 / 3, 3.0])
    assert cfg_ramp(3.0, 0, 1) == 3.0  # one entity: the full weight
    assert flow_grid("euler", 4) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert flow_grid("sde", 3)[-2:] == pytest.approx([0.04, 0.0])
    with pytest.raises(ValueError, match="euler, sde"):
        flow_grid("dpm", 4)


@pytest.mark.parametrize("kind", ["token", "scale"])
def test_a_path_is_one_step_per_entity_and_costs_its_flow_steps(kind):
    model = xar(entity=kind)
    result = sample(model, ["a red circle", "two blue squares"], seed=0, steps=3, cfg=2.0, keep_steps=True)
    N = model.layout.entities
    assert result.images.shape == (2, 3, 32, 32)
    assert len(result.steps) == N and result.forward_passes == N * 3 * 2
    assert result.steps[0]["flow"].shape == (2, 3, 3, 32, 32)  # each flow step's picture
    unguided = sample(model, ["a red circle"], seed=0, steps=3, cfg=1.0)
    assert unguided.forward_passes == N * 3


def test_a_path_draws_the_same_image_whatever_shares_its_batch():
    model = scrambled(xar(entity="cell"))
    alone = sample(model, ["a red circle"], seed=[5], steps=2, solver="sde").images
    together = sample(model, ["two blue squares", "a red circle"], seed=[9, 5], steps=2, solver="sde").images
    torch.testing.assert_close(together[1], alone[0], atol=1e-5, rtol=1e-5)


def test_given_entities_come_from_the_ground_truth():
    model = xar(entity="cell")
    z = torch.randn(2, 32, 4, 4)
    paths = model.paths(["a red circle", "a blue square"], seeds=0, steps=2)
    paths.give(z, model.layout.entities)  # every entity given: nothing left to sample
    assert bool(paths.done().all())
    torch.testing.assert_close(paths.images(final=True), model.decode_latents(z).cpu())
    paths = model.paths(["a red circle", "a blue square"], seeds=0, steps=2)
    paths.give(z, 2)
    paths.finish()
    tokens = model.layout.to_tokens(z)
    first_two = model.layout.entity < 2
    assert torch.equal(paths.tokens[:, first_two], tokens[:, first_two])
    assert not torch.allclose(paths.tokens[:, ~first_two], tokens[:, ~first_two])
    assert int(paths.passes[0]) == 2 * 2 * 2  # two entities sampled, two flow steps, guided


# --- the command line, the benchmark, the figures and the viewer -------------------------------------
def test_cotlab_generate_draws_entity_by_entity_with_either_solver(tmp_path):
    import json

    from cotlab.cli import main
    from cotlab.geneval import benchmark_prompts
    from cotlab.harness import save_checkpoint

    folder = save_checkpoint(xar(entity="scale"), tmp_path / "xar", name="xar", profile="smoke", command="test",
                             train_seconds=0, steps=0, metrics={})
    prompts = tmp_path / "one.jsonl"
    prompts.write_text(json.dumps(benchmark_prompts()[0]) + "\n")
    out = tmp_path / "out"
    assert main(["generate", str(folder), "--metadata", str(prompts), "--outdir", str(out), "--n-samples", "1",
                 "--steps", "2", "--solver", "sde", "--save-process"]) == 0
    assert (out / "00000" / "samples" / "0000.png").is_file()
    process = sorted(p.name for p in (out / "00000" / "process" / "0000").iterdir())
    assert process == ["step_00.png", "step_01.png", "step_02.png"]  # the image after each of the 3 scales
    assert main(["generate", str(folder), "--metadata", str(prompts), "--outdir", str(tmp_path / "dpm"),
                 "--solver", "dpm"]) == 2  # Flow-DPM-Solver is the DiT's, not this generator's


def test_the_benchmark_runs_end_to_end_and_its_bias_curves_meet_at_the_ground_truth(monkeypatch):
    from cotlab.xar import bench

    monkeypatch.setattr(bench, "SHIPPED", "no_such_checkpoint")  # the smoke variants only
    result = bench.bench_xar(every=100, n_samples=2, steps=2, variants=("xar_cell", "xar_cell_tf"), profile="smoke")
    assert [r["model"] for r in result["rows"]] == ["xar_cell", "xar_cell_tf"]
    assert [r["context"] for r in result["rows"]] == ["noisy", "teacher forcing"]
    assert [(d["a"], d["b"]) for d in result["differences"]] == [("xar_cell", "xar_cell_tf")]
    ncl, tf = (result["exposure_bias"][name] for name in ("xar_cell", "xar_cell_tf"))
    assert [p["given"] for p in ncl] == [0, 1, 2, 3, 4]
    assert ncl[0]["overall"] == result["rows"][0]["overall"]  # n = 0 is the model's own samples
    assert ncl[-1]["overall"] == tf[-1]["overall"]  # n = N: both hand over the whole true latent
    # so the last difference of gaps is (truth − own_ncl) − (truth − own_tf) = own_tf − own_ncl
    assert result["gap_differences"][-1]["value"] == pytest.approx(tf[0]["overall"] - ncl[0]["overall"])
    assert ncl[-1]["shapes_fd"] < ncl[0]["shapes_fd"]  # reconstructions of the truth are closer to it
    fd = result["differences"][0]["shapes_fd"]  # FD(ncl) − FD(tf), paired
    assert fd["value"] == pytest.approx(result["rows"][0]["shapes_fd"] - result["rows"][1]["shapes_fd"])
    assert fd["interval"][0] <= fd["value"] <= fd["interval"][1]
    assert ncl[0]["shapes_fd_gap"] == {"value": 0.0, "interval": [0.0, 0.0]}  # own − own
    assert ncl[-1]["shapes_fd_gap"]["value"] == pytest.approx(ncl[0]["shapes_fd"] - ncl[-1]["shapes_fd"])
    # and on Shapes-FD: (own_ncl − truth) − (own_tf − truth) = FD(own_ncl) − FD(own_tf)
    assert result["gap_differences"][-1]["shapes_fd"]["value"] == pytest.approx(fd["value"])
    text = bench.format_xar(result)
    assert "xar_cell − xar_cell_tf" in text and "Exposure bias of xar_cell_tf" in text


def test_the_exposure_bias_figure_draws_each_curve_and_both_gaps():
    import matplotlib.pyplot as plt

    from cotlab.xar import figures

    def point(n, score, gap, fd_gap):
        return {"given": n, "overall": score, "interval": [score - 0.1, score + 0.1],
                "gap": {"difference": gap, "interval": [gap - 0.1, gap + 0.1]},
                "shapes_fd_gap": {"value": fd_gap, "interval": [fd_gap - 0.2, fd_gap + 0.2]}}
    result = {"exposure_bias": {"xar_cell": [point(0, 0.4, 0.0, 0.0), point(1, 0.5, 0.1, 0.3)],
                                "xar_cell_tf": [point(0, 0.3, 0.0, 0.0), point(1, 0.45, 0.15, 0.6)]}}
    fig = figures.exposure_bias(result)
    curves = [[list(line.get_ydata()) for line in ax.lines if line.get_marker() == "o"] for ax in fig.axes[:3]]
    assert curves == [[[0.4, 0.5], [0.3, 0.45]], [[0.0, 0.1], [0.0, 0.15]], [[0.0, 0.3], [0.0, 0.6]]]  # not the caps
    plt.close(fig)


def test_the_figures_and_the_viewer_draw():
    import matplotlib.pyplot as plt

    from cotlab.xar import figures
    from cotlab.xar.viewer import XARViewer
    from cotlab.geneval import benchmark_prompts

    model = xar(entity="cell")
    for fig in (figures.entity_maps(), figures.masks(Layout("cell")),
                figures.entity_steps({k: Layout(k) for k in ENTITIES}, model.decode_latents, torch.randn(32, 4, 4))):
        plt.close(fig)
    viewer = XARViewer(model, benchmark_prompts()[:3], steps=3)
    fig = viewer.render(prompt=1, seed=0, step=2, flow_step=1)
    assert len(fig.axes) == 4
    plt.close(fig)
    with pytest.raises(Exception, match="flow step 4 is out of range"):
        viewer.render(flow_step=4)
    result = sample(model, ["a red circle"], seed=0, steps=3, keep_steps=True)
    plt.close(figures.flow_within_entities(result.steps))
