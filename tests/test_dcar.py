"""DC-AR's residual head on a smoke-size masked transformer over the shipped hybrid_f8 tokens."""
import numpy as np
import pytest
import torch

from cotlab.geneval import benchmark_prompts
from cotlab.harness import load_checkpoint, save_checkpoint
from cotlab.masked_ar import dcar
from cotlab.masked_ar.dcar import ResidualHead, ResidualHeadConfig, compare_residual
from cotlab.masked_ar.model import MaskedAR, MaskedARConfig
from cotlab.sampling import sample
from cotlab.shapes import World, make_batch


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    torch.manual_seed(0)
    generator = MaskedAR(MaskedARConfig.for_profile("smoke", tokenizer="hybrid_f8"))
    folder = save_checkpoint(generator, tmp_path_factory.mktemp("gen") / "maskgit_hybrid", name="maskgit_hybrid",
                             profile="smoke", command="test", train_seconds=0.0, steps=0, metrics={})
    return ResidualHead(ResidualHeadConfig.for_profile("smoke", generator=str(folder)))


@pytest.fixture(scope="module")
def batch():
    return make_batch(World(), np.random.default_rng(0), 8)


def test_loss_falls_and_sets_the_residual_scale(head, batch):
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        torch.manual_seed(1)  # the same noise and times each step
        loss, logs = head.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert head.residual_std > 0 and logs == {}
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert all(not p.requires_grad for p in head.generator.parameters())  # the transformer stays frozen
    assert all(not k.startswith("_") for k in head.state_dict())  # nor is it saved with the head


def test_sampling_adds_a_residual_to_generated_tokens(head):
    captions = ["a photo of a red circle", "a photo of two squares"]
    tokens = sample(head.generator, captions, steps=4, cfg=1.0).tokens  # (2, 16)
    h = head.condition(tokens, captions)
    z_r = head.sample(h, seed=0)
    hybrid = head.generator.frozen("tokenizer")
    assert z_r.shape == (2, hybrid.config.latent_channels, 4, 4)
    assert torch.equal(head.sample(h, seed=0), z_r)  # seeded
    images = head.add_residual(tokens, captions, seed=0)
    assert images.shape == (2, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert not torch.equal(images, hybrid.decode_indices(tokens).cpu())  # the residual changed the image


def test_sampling_integrates_from_noise_to_data(head, monkeypatch):
    """Euler steps from σ = 1 down to σ = 0: the head is asked for v at σ = 1, 1 − 1/T, …, 1/T."""
    seen, velocity = [], head.velocity

    def recording(x_sigma, sigma, h):
        seen.append(sigma.tolist())
        return velocity(x_sigma, sigma, h)

    monkeypatch.setattr(head, "velocity", recording)
    head.sample(torch.zeros(2, 16, head.generator.config.width), seed=0)
    T = head.config.sample_steps
    assert np.allclose(seen, [[1 - k / T] * 2 for k in range(T)])


def test_shipped_head_loads_strictly():
    """The port keeps the state dict (the time features have no parameters); its numbers are stale."""
    assert load_checkpoint("dcar_head").residual_std > 0  # load_checkpoint is strict: every tensor must match


def test_compare_residual_measures_both_variants_on_the_same_tokens(head, monkeypatch):
    """The residual is added to the very tokens the discrete variant decodes: with a stand-in head whose
    residual is zero, D(Z_q + 0) = D(Z_q), so the two variants are the same images and every number and
    paired difference agrees exactly; the tokens the head receives are those sampled for the prompt."""
    sampled, given, sample = [], [], dcar.sampling.sample

    def recording_sample(*args, **kwargs):
        result = sample(*args, **kwargs)
        sampled.append(result.tokens.clone())
        return result

    def zero_residual(tokens, captions, seed=0):
        given.append(tokens.clone())
        return head.generator.decode_tokens(tokens).cpu()  # D(Z_q): the hybrid decoder with Z_r = 0

    monkeypatch.setattr(dcar.sampling, "sample", recording_sample)
    monkeypatch.setattr(head, "add_residual", zero_residual)
    result = compare_residual(head, benchmark_prompts()[::200], n_samples=2, steps=2)
    assert len(given) == len(sampled) == 3 and all(torch.equal(a, b) for a, b in zip(given, sampled))
    discrete, hybrid = result["rows"]
    assert (discrete["variant"], hybrid["variant"]) == ("discrete", "discrete+residual")
    for key in ("overall", "shapes_fd", "psnr_to_nearest_render"):
        assert hybrid[key] == discrete[key]
        np.testing.assert_array_equal(hybrid["interval"][key], discrete["interval"][key])  # NaN where too few prompts
    assert result["difference"]["overall"]["difference"] == 0.0  # (its interval needs two prompts per task)
    assert result["difference"]["psnr_to_nearest_render"] == {"difference": 0.0, "interval": [0.0, 0.0]}
    assert 0 < discrete["shapes_fd"] and np.isfinite(discrete["psnr_to_nearest_render"])  # real numbers, not 0 = 0


def test_bench_hybrid_command_prints_and_writes_the_table(head, tmp_path, capsys):
    import json

    from cotlab.cli import main

    folder = save_checkpoint(head, tmp_path / "head", name="dcar_head", profile="smoke", command="test",
                             train_seconds=0.0, steps=0, metrics={})
    assert main(["bench", "hybrid", "--head", str(folder), "--every", "100", "--n-samples", "1", "--steps", "2",
                 "--json", str(tmp_path / "hybrid.json")]) == 0
    assert "| discrete+residual |" in capsys.readouterr().out
    assert [r["variant"] for r in json.loads((tmp_path / "hybrid.json").read_text())["rows"]] == \
        ["discrete", "discrete+residual"]
    assert main(["bench", "hybrid", "--head", str(tmp_path / "missing")]) != 0
