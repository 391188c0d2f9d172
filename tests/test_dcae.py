"""The DC-AE tokenizer: diffusers' AutoencoderDC at f8 and f4, its shortcuts, scaling factor and loss (smoke sizes)."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderDC
from diffusers.models.autoencoders.autoencoder_dc import DCDownBlock2d, DCUpBlock2d

from cotlab.harness import fit
from cotlab.shapes import BACKGROUND, ShapesDataModule, World, make_batch
from cotlab.tokenizers.dcae import DCAEConfig, DCAEF4Config, DCAETokenizer, foreground_weights, weighted_error


@pytest.fixture(scope="module")
def batch():
    return make_batch(World(), np.random.default_rng(0), 8)["image"]


def model(config_class=DCAEConfig, **overrides) -> DCAETokenizer:
    torch.manual_seed(0)
    return DCAETokenizer(config_class.for_profile("smoke", **overrides))


@pytest.mark.parametrize("config_class, side", [(DCAEConfig, 4), (DCAEF4Config, 8)])
def test_latent_and_image_shapes(batch, config_class, side):
    m = model(config_class)
    C = m.latent_channels
    with torch.no_grad():
        z = m.encode(batch)
        x_hat = m.decode(z)
    assert z.shape == (8, C, side, side)
    assert x_hat.shape == batch.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    assert m.tokens_per_image == side * side and m.bits_per_image == side * side * C * 16
    assert torch.equal(m.reconstruct(batch), x_hat)


def test_the_autoencoder_is_diffusers_own_and_rejects_wrong_sizes(batch):
    m = model()
    assert type(m.ae) is AutoencoderDC
    assert m.ae.spatial_compression_ratio == m.config.f == 8
    with pytest.raises(ValueError, match=r"World\(image_size=32\)"):
        m.encode(torch.rand(2, 3, 64, 64))


def _zero_conv(module: torch.nn.Module) -> None:
    torch.nn.init.zeros_(module.weight)
    if module.bias is not None:
        torch.nn.init.zeros_(module.bias)


@pytest.mark.parametrize("shortcut", [True, False])
def test_shortcut_switch_reaches_every_resolution_change(shortcut):
    """With its convolution zeroed, a block's output is exactly its shortcut: non-zero with
    shortcuts (pixel_unshuffle + channel averaging, channel duplication + pixel_shuffle, the
    encoder's output averaging, the decoder's input duplication), zero without."""
    m = model(shortcut=shortcut)
    blocks = [b for b in m.ae.modules() if isinstance(b, (DCDownBlock2d, DCUpBlock2d))]
    assert len(blocks) == 2 * (len(m.config.block_out_channels) - 1)  # every resolution change
    torch.manual_seed(1)
    with torch.no_grad():
        for block in blocks:
            _zero_conv(block.conv)
            h = torch.randn(2, block.conv.in_channels, 8, 8)
            assert block(h).abs().sum().item() > 0 if shortcut else torch.equal(block(h), torch.zeros_like(block(h)))
        _zero_conv(m.ae.encoder.conv_out)
        z = m.ae.encoder(torch.randn(2, 3, 32, 32))
        assert (z.abs().sum().item() > 0) == shortcut
        _zero_conv(m.ae.decoder.conv_in)
        seen = []
        hook = m.ae.decoder.up_blocks[-1].register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0]))
        m.ae.decoder(torch.randn(2, m.latent_channels, 4, 4))
        hook.remove()
        assert (seen[0].abs().sum().item() > 0) == shortcut


def test_without_shortcuts_the_same_weights_give_another_output(batch):
    a, b = model(shortcut=True), model(shortcut=False)
    b.load_state_dict(a.state_dict())  # the switch adds or removes no parameter
    with torch.no_grad():
        assert not torch.allclose(a.encode(batch), b.encode(batch))


def test_scaling_factor_gives_unit_variance(batch):
    m = model()
    assert m.scaling_factor == 1.0  # before any latent was seen
    scale = m.fit_scaling_factor(batch)
    with torch.no_grad():
        assert (m.encode(batch) * scale).std().item() == pytest.approx(1.0, abs=1e-4)


def test_training_tracks_the_latent_std(tmp_path):
    m = model()
    fit(m, ShapesDataModule(batch_size=8, seed=0), profile="smoke", run_dir=tmp_path, name="dcae",
        enable_progress_bar=False)
    assert m.latent_std.item() != 1.0  # the running estimate moved
    assert torch.isfinite(m.latent_std) and m.scaling_factor > 0


def test_loss_falls_on_a_tiny_batch(batch):
    m = model()
    optimizer = torch.optim.AdamW(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss, logs = m.loss({"image": batch})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert set(logs) == {"psnr", "latent_std"}


def test_foreground_pixels_weigh_one_plus_lambda(batch):
    w = foreground_weights(batch, 4.0)  # (B, 1, H, W)
    assert w.shape == (8, 1, 32, 32) and set(w.unique().tolist()) == {1.0, 5.0}
    background = torch.tensor(BACKGROUND).view(1, 3, 1, 1) / 255
    assert (w == 1).equal(((batch - background).abs().amax(1, keepdim=True) <= 0.02))
    assert foreground_weights(batch, 4.0, threshold=0.1).sum() < w.sum()  # antialiased edges drop out
    x_hat = batch + 0.1
    assert weighted_error(x_hat, batch, torch.ones_like(w)).item() == pytest.approx(0.01, rel=1e-4)
    assert weighted_error(x_hat, batch, w, "l1").item() == pytest.approx(0.1, rel=1e-4)


def test_the_loss_weighs_the_foreground_by_lambda(batch):
    m = model()
    with torch.no_grad():
        loss, _ = m.eval().loss({"image": batch})
        x = batch * 2 - 1
        x_hat = m.ae.decode(m.ae.encode(x).latent).sample
        w = 1 + m.config.foreground_extra * ((batch - torch.tensor(BACKGROUND).view(1, 3, 1, 1) / 255).abs()
                                             .amax(1, keepdim=True) > 0.02).float()
    assert loss.item() == pytest.approx(((w * (x_hat - x) ** 2).sum() / (3 * w.sum())).item(), rel=1e-6)
    assert m.latent_std.item() == 1.0  # evaluation does not move the running σ_z
