"""The DPO objective for the masked generator: known answers for the loss, a normalised likelihood
estimate, and the shared mask of a pair. Smoke-size models on the shipped vq_f8 and clip."""
import math

import pytest
import torch

from cotlab.masked_ar.model import MaskedAR, MaskedARConfig, cosine_schedule, random_mask
from cotlab.preference.dpo import dpo_loss, masked_logp, pair_masks


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MaskedAR(MaskedARConfig.for_profile("smoke")).eval()


def test_dpo_loss_by_hand():
    # implicit rewards 0.5·(−1 + 2) = 0.5 and 0.5·(−3 + 2) = −0.5: margin 1, loss log(1 + e^−1)
    loss, logs = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert logs["margin"].item() == pytest.approx(1.0) and logs["reward_accuracy"].item() == 1.0
    chosen = torch.tensor([-1.0], requires_grad=True)
    dpo_loss(chosen, torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)[0].backward()
    assert chosen.grad.item() == pytest.approx(-0.5 / (1 + math.exp(1)))  # −β σ(−margin): raise the chosen
    same, _ = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-1.0]), torch.tensor([-3.0]), 0.5)
    assert same.item() == pytest.approx(math.log(2))  # policy = reference: no preference yet


def test_masked_logp_is_a_normalised_log_likelihood(model):
    K, N = model.codebook_size, model.num_tokens
    text, pad = model.encode_text(["a photo of a red circle"] * K)
    tokens = torch.randint(0, K, (1, N)).repeat(K, 1)
    tokens[:, 5] = torch.arange(K)  # every code at the one masked position
    masked = torch.zeros(K, N, dtype=torch.bool)
    masked[:, 5] = True
    with torch.no_grad():
        logp = masked_logp(model, tokens, text, pad, masked)  # (K,)
        assert torch.logsumexp(logp, 0).item() == pytest.approx(0.0, abs=1e-4)  # Σ_k p(k | rest) = 1
        assert (masked_logp(model, tokens, text, pad, torch.zeros_like(masked)) == 0).all()  # nothing masked
        both = masked.clone()
        both[:, 9] = True
        two = masked_logp(model, tokens[:1], text[:1], pad[:1], both[:1])
        logits = model(tokens[:1].masked_fill(both[:1], model.mask_id), text[:1], pad[:1]).log_softmax(-1)
        assert two.item() == pytest.approx((logits[0, 5, tokens[0, 5]] + logits[0, 9, tokens[0, 9]]).item(), abs=1e-5)


def test_pairs_share_one_mask_unless_asked_not_to():
    torch.manual_seed(1)
    chosen, rejected = pair_masks(64, 16)
    assert chosen is rejected
    chosen, rejected = pair_masks(64, 16, shared=False)
    assert not torch.equal(chosen, rejected)


def test_random_mask_follows_the_cosine_schedule():
    torch.manual_seed(2)
    masked = random_mask(4096, 16)  # (B, N)
    counts = masked.sum(1).float()
    assert counts.min() >= 1 and counts.max() <= 16
    expected = torch.ceil(cosine_schedule(torch.rand(200_000)) * 16).clamp(min=1).mean()  # E[⌈γ(r)·N⌉]
    assert counts.mean().item() == pytest.approx(expected.item(), rel=0.03)
