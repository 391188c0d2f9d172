"""The DPO objective for the masked generator: known answers for the loss, a normalised likelihood
estimate, and the shared mask of a pair. Smoke-size models on the shipped vq_f8 and clip."""
import math
from types import SimpleNamespace

import pytest
import torch

from cotlab.masked_ar.model import MaskedAR, MaskedARConfig, cosine_schedule, random_mask
from cotlab.preference.dpo import DPO, dpo_loss, masked_logp, pair_masks
from cotlab.sampling import path_seed


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


def test_dpo_loss_of_a_batch_by_hand():
    """β = 0.5. Pair 1: rewards 0.5·(−1 + 2) = 0.5 and 0.5·(−3 + 2) = −0.5, margin 1. Pair 2: 0.5·(−2 + 1)
    = −0.5 and 0, margin −0.5. Pair 3: policy = reference, margin 0 — a tie is not ranked right.
    Loss: the mean of log(1 + e^−m); margin 1/6; accuracy 1/3."""
    loss, logs = dpo_loss(torch.tensor([-1.0, -2.0, -1.0]), torch.tensor([-3.0, -1.0, -1.0]),
                          torch.tensor([-2.0, -1.0, -1.0]), torch.tensor([-2.0, -1.0, -1.0]), 0.5)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(0.5)) + math.log(2)) / 3
    assert loss.item() == pytest.approx(expected)
    assert logs["margin"].item() == pytest.approx(1 / 6) and logs["reward_accuracy"].item() == pytest.approx(1 / 3)


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


class KnownLogits:
    """A stand-in generator (K = 2, N = 3, [MASK] = 2) with known probabilities: at a masked input
    position n, p_n = (0.25, 0.75), (0.6, 0.4), (0.1, 0.9); at a visible one (0.5, 0.5)."""

    mask_id = 2

    def __call__(self, tokens, text, pad):
        masked = torch.tensor([[0.25, 0.75], [0.6, 0.4], [0.1, 0.9]]).log().expand(len(tokens), 3, 2)
        return torch.where((tokens == self.mask_id)[..., None], masked, torch.tensor([0.5, 0.5]).log())


def test_masked_logp_by_hand():
    # row 1: tokens (1, 0, 1), positions 0 and 1 masked: log 0.75 + log 0.6
    # row 2: tokens (0, 0, 1), positions 1 and 2 masked: log 0.6 + log 0.9 (position 0, visible, not counted)
    tokens = torch.tensor([[1, 0, 1], [0, 0, 1]])
    masked = torch.tensor([[True, True, False], [False, True, True]])
    logp = masked_logp(KnownLogits(), tokens, torch.zeros(2, 1, 1), torch.ones(2, 1, dtype=torch.bool), masked)
    assert logp.tolist() == pytest.approx([math.log(0.75 * 0.6), math.log(0.6 * 0.9)])


def test_pairs_share_one_mask_unless_asked_not_to():
    """Both masks are masked training's (``random_mask``): one draw for the pair, or two in a row."""
    torch.manual_seed(1)
    chosen, rejected = pair_masks(64, 16)
    assert chosen is rejected
    torch.manual_seed(1)
    assert torch.equal(chosen, random_mask(64, 16))
    torch.manual_seed(1)
    chosen, rejected = pair_masks(64, 16, shared=False)
    torch.manual_seed(1)
    first, second = random_mask(64, 16), random_mask(64, 16)
    assert torch.equal(chosen, first) and torch.equal(rejected, second) and not torch.equal(chosen, rejected)


class PairModel:
    """A stand-in for ``DPO``'s policy (and its frozen base): at a masked input position p(1) = ``p1``
    (K = 2, [MASK] = 2); it records the inputs it sees. Its guidance term is the constant 2."""

    mask_id, device = 2, torch.device("cpu")

    def __init__(self, p1: float, shared_mask: bool = True, guidance: str = "none"):
        self.config = SimpleNamespace(shared_mask=shared_mask, beta=0.5, guidance=guidance, reward_coef=0.1)
        self.p1, self.inputs, self.base = p1, [], None

    def encode_text(self, captions):
        return torch.zeros(len(captions), 1, 1), torch.ones(len(captions), 1, dtype=torch.bool)

    def __call__(self, tokens, text, pad):
        assert len(text) == len(pad) == len(tokens)  # chosen rows, then rejected rows, each with its caption
        self.inputs.append(tokens)
        masked = torch.tensor([1 - self.p1, self.p1]).log()
        return torch.where((tokens == self.mask_id)[..., None], masked, torch.tensor([0.5, 0.5]).log())

    def frozen(self, name):
        assert name == "base"
        return self.base

    def guidance_term(self, batch):
        return torch.tensor(2.0), {"fresh_reward": torch.tensor(0.7)}


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("guidance", ["none", "training"])
def test_dpo_training_loss_by_hand(shared, guidance):
    """Chosen images all code 1, rejected all code 0; the policy gives p(1) = 0.75, the base 0.5 at every
    masked position. A pair with n masked positions: rewards 0.5·n·log(0.75/0.5) and 0.5·n·log(0.25/0.5),
    margin 0.5·n·log 3, loss log(1 + 3^(−n/2)). The masks are masked training's (``random_mask``): one
    for both images (shared) or a second draw for the rejected one. Guidance adds 0.1 × its term (2)."""
    B, N = 4, 5
    model = PairModel(0.75, shared, guidance)
    model.base = PairModel(0.5)
    batch = {"chosen": torch.ones(B, N, dtype=torch.long), "rejected": torch.zeros(B, N, dtype=torch.long),
             "caption": ["a red circle"] * B}
    torch.manual_seed(0)
    chosen_mask = random_mask(B, N)
    rejected_mask = chosen_mask if shared else random_mask(B, N)
    torch.manual_seed(0)
    loss, logs = DPO.loss(model, batch)
    for inputs in model.inputs + model.base.inputs:  # policy and reference see the same masked input
        assert torch.equal(inputs[:B] == 2, chosen_mask) and torch.equal(inputs[B:] == 2, rejected_mask)
    n_chosen, n_rejected = chosen_mask.sum(1).tolist(), rejected_mask.sum(1).tolist()
    margins = [0.5 * (a * math.log(1.5) - b * math.log(0.5)) for a, b in zip(n_chosen, n_rejected)]
    expected = sum(math.log(1 + math.exp(-m)) for m in margins) / B + (0.1 * 2.0 if guidance == "training" else 0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["margin"].item() == pytest.approx(sum(margins) / B, rel=1e-5)
    assert ("fresh_reward" in logs) == (guidance == "training")


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


def test_building_preference_data_leaves_the_global_random_stream_alone(monkeypatch, tmp_path):
    """DPO builds its data on first use, inside the model's construction and after training's seed:
    the build (its models draw initial weights) must not move the stream the model's own weights and
    masks come from, or a first run trains another model than every later run from the cache."""
    from cotlab.preference import data

    monkeypatch.setattr(data, "RUNS_DIR", tmp_path)
    monkeypatch.setattr(data, "checkpoint_card", lambda name: {})
    monkeypatch.setattr(data, "build", lambda spec, progress: {"drawn": torch.randn(100)})
    before = torch.get_rng_state()
    built = data.load_or_build(data.PreferenceSpec(), progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(data.load_or_build(data.PreferenceSpec(), progress=False)["drawn"], built["drawn"])  # cached


@pytest.mark.slow  # three smoke trainings, ~10 s
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


# --- the reward-model guidance term, on stand-ins -------------------------------------------------
class GuidedModel:
    """A stand-in for ``DPO`` in ``guidance_term``: it records whether it was in training mode."""

    device = torch.device("cpu")

    def __init__(self, guidance: str):
        self.config = SimpleNamespace(guidance=guidance, guidance_group=2, guidance_prompts=2, data_seed=5,
                                      label="orm")
        self.global_step, self.training = 7, True

    def eval(self):
        self.training = False

    def train(self):
        self.training = True


@pytest.fixture
def fresh_samples(monkeypatch):
    """``guidance_term``'s collaborators replaced: rollouts that record what they were asked, the
    reward model returning ``rewards``, and a leaf log-probability (4, 3) to take gradients at."""
    import cotlab.preference.dpo as dpo

    seen = SimpleNamespace(rewards=torch.tensor([1.0, 0.0, 0.5, 0.5]), logp=torch.zeros(4, 3, requires_grad=True))

    def rollout(policy, captions, metas, seeds):
        seen.training, seen.captions, seen.metas, seen.seeds = policy.training, captions, metas, seeds
        return SimpleNamespace(images="images", metas=metas)

    def load_reward(name):
        seen.label = name
        return lambda images, captions, metas: seen.rewards

    monkeypatch.setattr(dpo, "rollout", rollout)
    monkeypatch.setattr(dpo, "load_reward", load_reward)
    monkeypatch.setattr(dpo, "trajectory_logp", lambda policy, rollouts: seen.logp)
    return seen


BATCH = {"meta": [{"prompt": "a red circle"}, {"prompt": "two squares"}, {"prompt": "a blue star"}]}


def test_guidance_samples_the_first_captions_of_the_batch_in_eval_mode(fresh_samples):
    """G = 2 fresh samples of each of the first 2 captions, decoded in eval mode from seeds that name
    (data seed, step, sample), scored by the label's reward model; training mode comes back after."""
    model = GuidedModel("released")
    DPO.guidance_term(model, BATCH)
    assert fresh_samples.captions == ["a red circle", "a red circle", "two squares", "two squares"]
    assert [m["prompt"] for m in fresh_samples.metas] == fresh_samples.captions
    assert fresh_samples.seeds == [path_seed(5, 7, i) for i in range(4)]
    assert fresh_samples.training is False and model.training is True
    assert fresh_samples.label == "orm"


def test_released_guidance_is_a_constant_minus_log_p_yes(fresh_samples):
    """The released term: −mean log P(yes), P clamped at 1e-6, as a new tensor with no gradient.
    Rewards (0.5, 0.25, 0, 1): (log 2 + log 4 − log 1e-6 + 0) / 4."""
    fresh_samples.rewards = torch.tensor([0.5, 0.25, 0.0, 1.0])
    term, logs = DPO.guidance_term(GuidedModel("released"), BATCH)
    expected = (math.log(2) + math.log(4) - math.log(1e-6)) / 4
    assert term.item() == pytest.approx(expected, rel=1e-6)
    assert not term.requires_grad and term.grad_fn is None
    assert logs["fresh_reward"].item() == pytest.approx(0.4375)


def test_training_guidance_is_grpo_on_the_fresh_samples(fresh_samples):
    """The training term is GRPO on the fresh samples at ρ = 1: rewards (1, 0 | 0.5, 0.5) in groups of
    2 give advantages ±0.5/(0.5 + 1e-4) and 0 (an all-equal group is dropped), so the loss is
    −mean(A) = 0 and ∂loss/∂log π(step t of image b) = −A_b / (4·3)."""
    term, logs = DPO.guidance_term(GuidedModel("training"), BATCH)
    term.backward()
    A = 0.5 / (0.5 + 1e-4)
    expected = -torch.tensor([A, -A, 0.0, 0.0])[:, None].expand(4, 3) / 12
    assert term.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.allclose(fresh_samples.logp.grad, expected, atol=1e-7)
    assert logs["fresh_reward"].item() == pytest.approx(0.5) and logs["clipped"].item() == 0.0
