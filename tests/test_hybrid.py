"""The hybrid tokenizer: tokens and residual, the two decoding paths, the stages and their freezing (smoke sizes)."""

import math

import numpy as np
import pytest
import torch

from cotlab.shapes import World, make_batch
from cotlab.tokenizers.hybrid import ALTERNATING, HybridConfig, HybridTokenizer
from cotlab.tokenizers.vq import VectorQuantizer


@pytest.fixture(scope="module")
def batch():
    return make_batch(World(), np.random.default_rng(0), 8)["image"]


def model(**overrides) -> HybridTokenizer:
    torch.manual_seed(0)
    return HybridTokenizer(HybridConfig.for_profile("smoke", **overrides))


@pytest.fixture(scope="module")
def trained(batch):
    """A model whose codebook was initialised (k-means on one batch), in eval mode."""
    m = model()
    m.train()
    m.set_stage(2)
    m.losses(batch, stage=2, continuous=False)
    return m.eval()


def test_tokens_residual_and_rate(trained, batch):
    C, K = trained.config.latent_channels, trained.codebook_size
    with torch.no_grad():
        indices, residual = trained.encode(batch)
    assert isinstance(trained.quantizer, VectorQuantizer)  # the VQ tokenizer's quantizer, not a second one
    assert indices.shape == (8, 16) and indices.dtype == torch.long and 0 <= indices.min() and indices.max() < K
    assert residual.shape == (8, C, 4, 4)
    assert torch.equal(trained.encode_indices(batch), indices)
    assert trained.tokens_per_image == 16
    assert trained.discrete_bits_per_image == 16 * np.log2(K)
    assert trained.bits_per_image == 16 * np.log2(K) + 16 * C * 16


def test_decode_with_the_residual_is_reconstruct_and_z(trained, batch):
    with torch.no_grad():
        indices, residual = trained.encode(batch)
        assert torch.equal(trained.decode(indices, residual), trained.reconstruct(batch))
        # Z_q + Z_r is the encoder's own latent: the hybrid path is the plain autoencoder
        z = trained.latents(batch)
        assert torch.allclose(trained.quantizer.lookup(indices) + residual, z, atol=1e-5)
        direct = ((trained.ae.decode(z).sample + 1) / 2).clamp(0, 1)
        assert torch.allclose(trained.reconstruct(batch), direct, atol=1e-5)


def test_discrete_path_ignores_the_residual(trained, batch):
    with torch.no_grad():
        indices, residual = trained.encode(batch)
        discrete = trained.reconstruct(batch, residual=False)
        assert torch.equal(discrete, trained.decode(indices))
        assert torch.equal(discrete, trained.decode(trained.encode_indices(batch)))
        assert torch.equal(discrete, trained.decode_indices(indices))  # the VQ tokenizers' interface
        assert not torch.equal(discrete, trained.decode(indices, residual))


def test_stages_are_step_ranges():
    m = model(max_steps=10, warmup_until=0.2, discrete_until=0.6)
    assert [m.stage(s) for s in range(10)] == [1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    hart = model(max_steps=10, **ALTERNATING)
    assert {hart.stage(s) for s in range(10)} == {3}
    with pytest.raises(ValueError, match="warmup_until"):
        HybridConfig.for_profile("smoke", warmup_until=0.7, discrete_until=0.5)


def frozen_names(m: HybridTokenizer) -> set[str]:
    return {name for name, p in m.named_parameters() if not p.requires_grad}


def test_stage_three_freezes_exactly_the_encoder_and_quantizer():
    m = model()
    m.train()
    encoder_and_quantizer = {n for n, _ in m.named_parameters() if n.startswith(("ae.encoder.", "quantizer."))}
    for stage in (1, 2):
        m.set_stage(stage)
        assert frozen_names(m) == {"quantizer.codebook"}  # the EMA codebook never learns by gradient
        assert m.quantizer.training
    m.set_stage(3)
    assert frozen_names(m) == encoder_and_quantizer
    assert all(p.requires_grad for n, p in m.named_parameters() if n.startswith("ae.decoder."))
    assert not m.quantizer.training  # no EMA updates or restarts either
    hart = model(**ALTERNATING)
    hart.train()
    hart.set_stage(3)
    assert frozen_names(hart) == {"quantizer.codebook"}  # HART's recipe freezes nothing


def test_frozen_steps_change_the_decoder_only(batch):
    m = model()
    m.train()
    optimizer = m.configure_optimizers()["optimizer"]

    def step(stage: int, continuous: bool) -> None:
        m.set_stage(stage)
        loss, _ = m.losses(batch, stage, continuous)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(2, continuous=False)  # leaves Adam state (momentum) for every learnable parameter
    before = {k: v.clone() for k, v in m.state_dict().items()}
    step(3, continuous=True)
    step(3, continuous=False)
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("ae.decoder.") for k in changed)


@pytest.mark.parametrize("stage, continuous", [(1, True), (2, False)])
def test_loss_falls_on_a_tiny_batch(batch, stage, continuous):
    m = model()
    m.train()
    m.set_stage(stage)
    optimizer = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(25):
        loss, logs = m.losses(batch, stage, continuous)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(logs["rec_loss"].item())
    assert losses[-1] < 0.5 * losses[0]


def test_loss_names_the_psnr_by_the_path_it_decodes(batch):
    m = model(max_steps=10)
    m.train()
    loss, logs = m.loss({"image": batch})  # step 0: stage 1, which decodes Z
    assert loss.ndim == 0 and logs["stage"] == 1.0
    assert "continuous_psnr" in logs and "discrete_psnr" not in logs and "psnr" not in logs


def test_each_stage_starts_with_its_own_warm_up():
    m = model(max_steps=10, warmup_steps=2)  # stages: steps 0–1, 2–5, 6–9
    factor = m.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    cosine = [0.5 * (1 + math.cos(math.pi * s / 10)) for s in range(10)]
    assert [factor(s) / cosine[s] for s in (0, 1, 2, 3, 6, 7)] == pytest.approx([0.5, 1, 0.5, 1, 0.5, 1])
