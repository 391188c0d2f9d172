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


# --- the preference pairs ------------------------------------------------------------------------
def test_pairs_take_every_yes_against_every_no_evenly():
    from cotlab.preference.data import pairs

    # prompt 0: two yes (rows 0, 1), three no (2, 3, 4); prompt 1: all yes; prompt 2: all no
    data = {"prompt": torch.tensor([0, 0, 0, 0, 0, 1, 1, 2, 2]),
            "orm": torch.tensor([0.9, 0.6, 0.1, 0.4, 0.2, 0.8, 0.7, 0.1, 0.3])}
    every = pairs(data, "orm", pairs_per_prompt=100)
    assert sorted(map(tuple, every.tolist())) == [(i, j) for i in (0, 1) for j in (2, 3, 4)]  # six, none twice
    first = pairs(data, "orm", pairs_per_prompt=2).tolist()
    assert len(first) == 2 and {c for c, _ in first} == {0, 1} and len({r for _, r in first}) == 2  # a diagonal
    with pytest.raises(ValueError, match="choose one of"):
        pairs(data, "clip")


# --- the paper's released guidance cannot train -------------------------------------------------
def _train_smoke(name: str, tmp_path):
    from cotlab.harness import train

    torch.manual_seed(0)
    model, metrics, _ = train(name, "smoke", seed=0, out=tmp_path / name)
    return model, metrics


def test_released_guidance_trains_the_same_weights_as_plain_dpo(tmp_path):
    """The paper's reward term is a fresh constant tensor: the loss changes, not one gradient — so
    DPO with it ends bit for bit where plain DPO does; the guidance that trains does not."""
    plain, _ = _train_smoke("dpo", tmp_path)
    released, metrics = _train_smoke("dpo_guidance_released", tmp_path)
    training, _ = _train_smoke("dpo_guidance", tmp_path)
    assert "train_fresh_reward" in metrics  # the term was computed
    for (name, a), b in zip(plain.state_dict().items(), released.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), training.state_dict().values()))
