"""The linear DiT of notebook 04: its flow-matching loss, its sampling paths (checked on a velocity
field whose exact solution is known), and SANA 1.5's growth and block importance.

The smoke-size models read the shipped ``dcae_f8`` autoencoder and ``clip`` text encoder."""
from types import SimpleNamespace

import pytest
import torch

from cotlab.dit.decoding import FlowPaths, make_scheduler
from cotlab.dit.model import SanaConfig, SanaDiT
from cotlab.dit.scaling import block_importance, grow, prune, with_blocks, zero_output
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
