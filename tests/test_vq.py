"""The VQ tokenizer: quantizer lookup, straight-through gradient, EMA, restarts, k-means init, and the
tokenizer interface (smoke sizes)."""
import math

import numpy as np
import pytest
import torch

from cotlab.registry import get_recipe
from cotlab.shapes import BACKGROUND, World, make_batch
from cotlab.tokenizers.vq import (PLAIN, VectorQuantizer, VQConfig, VQF4Config, VQTokenizer, kmeans,
                                  squared_distances)


@pytest.fixture(scope="module")
def images():
    return make_batch(World(), np.random.default_rng(0), 8)["image"]


@pytest.mark.parametrize("remedies", [dict(), dict(code_dim=4, cosine=True, ema=True)])
def test_quantizer_indices_are_nearest_codes_and_z_q_is_their_lookup(remedies):
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 16, **remedies).eval()
    z = torch.randn(2, 8, 3, 3)
    z_q, indices, loss, stats = vq(z)
    assert z_q.shape == z.shape and indices.shape == (2, 9) and indices.dtype == torch.long
    assert 0 <= indices.min() and indices.max() < 16
    z_e = vq.project(z)  # (18, d)
    assert torch.equal(indices.reshape(-1), torch.cdist(z_e, vq.codes()).argmin(1))
    assert torch.allclose(z_q, vq.lookup(indices), atol=1e-6)
    assert torch.equal(vq.encode(z), indices)
    assert loss.ndim == 0 and loss > 0
    assert 0 < stats["usage"] <= 1 and 1 <= stats["perplexity"] <= 16


def test_squared_distances_equal_the_direct_formula():
    z, e = torch.randn(5, 3), torch.randn(7, 3)
    assert torch.allclose(squared_distances(z, e), ((z[:, None] - e[None]) ** 2).sum(-1), atol=1e-5)


def test_straight_through_gradient_reaches_the_encoder():
    torch.manual_seed(0)
    encoder = torch.nn.Conv2d(3, 8, 1)
    vq = VectorQuantizer(8, 16)
    z_q, _, _, _ = vq(encoder(torch.randn(2, 3, 4, 4)))
    z_q.pow(2).sum().backward()  # a stand-in decoder loss, without the VQ loss
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0


def test_codebook_loss_trains_the_codes_only_without_ema():
    z = torch.randn(2, 8, 2, 2)
    _, _, loss, _ = (learned := VectorQuantizer(8, 4))(z)
    loss.backward()
    assert learned.codebook.grad.abs().sum() > 0
    assert not VectorQuantizer(8, 4, ema=True).codebook.requires_grad


def test_ema_moves_a_used_code_toward_its_inputs():
    vq = VectorQuantizer(2, 2, ema=True, decay=0.5)
    vq.codebook.data.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    vq.embed_sum.copy_(vq.codebook.data)  # counts N_k = 1, so m_k = e_k
    z = torch.tensor([1.0, 2.0, 0.5, 1.5]).reshape(1, 2, 2, 1)  # two vectors: (1, 0.5) and (2, 1.5)
    _, indices, _, _ = vq(z)
    assert indices.tolist() == [[0, 0]]
    mean = torch.tensor([1.5, 1.0])
    before = torch.zeros(2)
    assert (vq.codebook[0] - mean).norm() < (before - mean).norm()
    # N_0 = ½·1 + ½·2 = 1.5, m_0 = ½·0 + ½·(3, 2) = (1.5, 1): e_0 = m_0 / N̂_0 with N̂_0 ≈ N_0
    assert torch.allclose(vq.codebook[0], torch.tensor([1.0, 2 / 3]), atol=1e-3)
    assert torch.allclose(vq.cluster_size, torch.tensor([1.5, 0.5]))


def test_a_dead_code_is_restarted_from_the_batch():
    torch.manual_seed(0)
    vq = VectorQuantizer(2, 3, dead_code_threshold=0.5, decay=0.5)
    vq.codebook.data.copy_(torch.tensor([[0.0, 0.0], [0.1, 0.0], [100.0, 100.0]]))
    z = torch.rand(1, 2, 4, 4) * 0.1  # every vector near the first two codes
    vq(z)  # code 2 not hit: N_2 = ½·1 = 0.5, not yet below the threshold
    assert torch.equal(vq.codebook[2], torch.tensor([100.0, 100.0]))
    vq(z)  # N_2 = 0.25: dead, so before the next lookup it is replaced by one of the batch's vectors
    _, _, _, stats = vq(z)
    assert stats["restarted"] == 1
    assert (vq.codebook[2][None] == vq.project(z)).all(1).any()


def test_kmeans_init_uses_the_first_batch_only():
    torch.manual_seed(0)
    vq = VectorQuantizer(2, 2, kmeans_init=True)
    centres = torch.tensor([[5.0, 5.0], [-5.0, -5.0]])
    z = (centres[torch.arange(16) % 2] + 0.01 * torch.randn(16, 2)).T.reshape(1, 2, 4, 4)
    assert not vq.initialized
    vq(z)
    assert vq.initialized
    found = vq.codebook.detach()[vq.codebook[:, 0].argsort(descending=True)]
    assert torch.allclose(found, centres, atol=0.05)
    vq(z + 100)  # no second initialisation
    assert torch.allclose(vq.codebook.detach()[vq.codebook[:, 0].argsort(descending=True)], found)


def test_kmeans_finds_separated_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 3.0], [3.0, 0.0], [-3.0, -3.0]])
    z = centres.repeat(20, 1) + 0.05 * torch.randn(60, 2)
    found, counts = kmeans(z, 3)
    assert sorted(counts.tolist()) == [20, 20, 20]
    assert torch.cdist(centres, found).min(1).values.max() < 0.1


def test_eval_mode_leaves_the_codebook_alone():
    vq = VectorQuantizer(4, 8, ema=True, kmeans_init=True, dead_code_threshold=2.0).eval()
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(torch.randn(2, 4, 2, 2))
    assert all(torch.equal(state[k], v) for k, v in vq.state_dict().items())


def test_lookup_rejects_bad_indices():
    vq = VectorQuantizer(4, 8)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        vq.lookup(torch.full((1, 4), 8))
    with pytest.raises(ValueError, match="square"):
        vq.lookup(torch.zeros(1, 5, dtype=torch.long))
    assert vq.lookup(torch.zeros(1, 2, 3, dtype=torch.long)).shape == (1, 4, 2, 3)


@pytest.mark.parametrize("config, tokens", [(VQConfig, 16), (VQF4Config, 64)])
def test_tokenizer_shapes_and_bits(config, tokens, images):
    model = VQTokenizer(config.for_profile("smoke")).eval()
    K = model.config.codebook_size
    assert model.tokens_per_image == tokens and model.codebook_size == K
    assert model.bits_per_image == tokens * math.log2(K)
    indices = model.encode_indices(images)
    assert indices.shape == (8, tokens) and indices.dtype == torch.long and indices.max() < K
    out = model.reconstruct(images)
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1


def test_decode_indices_of_encode_indices_is_reconstruct(images):
    torch.manual_seed(0)
    model = VQTokenizer(VQConfig.for_profile("smoke"))
    model.train()
    model.loss({"image": images})  # k-means init, so that codes differ
    assert torch.equal(model.decode_indices(model.encode_indices(images)), model.reconstruct(images))


def test_bad_images_and_configs_name_the_fix():
    model = VQTokenizer(VQConfig.for_profile("smoke"))
    with pytest.raises(ValueError, match=r"World\(image_size=32\)"):
        model.encode_indices(torch.rand(2, 3, 30, 30))
    with pytest.raises(ValueError, match="layers_per_block"):
        VQConfig.for_profile("smoke", block_out_channels=(8, 16, 16))
    with pytest.raises(ValueError, match="rec_loss"):
        VQConfig.for_profile("smoke", rec_loss="huber")


@pytest.mark.parametrize("remedies", [dict(quantize_after=0.0), PLAIN, dict(rec_loss="l1", quantize_after=0.0)])
def test_loss_falls_on_a_fixed_batch(remedies, images):
    torch.manual_seed(0)
    model = VQTokenizer(VQConfig.for_profile("smoke", **remedies))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, logs = model.loss({"image": images})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert {"rec_loss", "vq_loss", "psnr", "usage", "perplexity", "restarted"} <= set(logs)


def test_recipes_build_their_configs():
    f8, f4, plain = (get_recipe(n).build("smoke") for n in ("vq_f8", "vq_f4", "vq_f8_plain"))
    assert (f8.tokens_per_image, f4.tokens_per_image, plain.tokens_per_image) == (16, 64, 16)
    c = f8.config
    assert c.ema and c.kmeans_init and c.dead_code_threshold > 0 and c.quantize_after > 0
    q = plain.quantizer
    assert not (q.ema or q.cosine or q.dead_code_threshold or q.code_dim != q.dim) and q.initialized
    assert plain.config.quantize_after == 0


def test_continuous_warmup_leaves_the_codebook_alone(images):
    """Before ``quantize_after`` the decoder sees z unquantized and the codebook is not yet set up;
    in eval mode the tokenizer always quantizes."""
    model = VQTokenizer(VQConfig.for_profile("smoke", quantize_after=0.5))
    model.train()
    assert not model.quantizing  # step 0 of 10
    loss, logs = model.loss({"image": images})
    loss.backward()
    assert "usage" not in logs and not model.quantizer.initialized
    assert all(p.grad is not None for p in model.ae.encoder.parameters())
    model.eval()
    assert model.quantizing


def test_reconstruction_loss_weighs_a_foreground_pixel_foreground_weight_times(images):
    model = VQTokenizer(VQConfig.for_profile("smoke"))
    background = torch.tensor(BACKGROUND).view(1, 3, 1, 1) / 255
    fg = ((images - background).abs().amax(1, keepdim=True) > 0.1).float()  # (B, 1, H, W)
    x_hat = images + 0.1 * fg  # wrong on the foreground only
    w = model.config.foreground_weight
    expected = 0.01 * w * fg.sum() / (w * fg.sum() + (1 - fg).sum())
    assert model.reconstruction_loss(x_hat, images).item() == pytest.approx(expected.item(), rel=1e-4)
