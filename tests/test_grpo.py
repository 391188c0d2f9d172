"""GRPO's pieces against known answers: the step log-probability of MaskGIT decoding against a
brute-force enumeration of every decoding of a tiny model (and against diffusers' AmusedScheduler
sampling it), the group advantages, the clipped objective with its k3 KL, the re-masking draws."""
import inspect
import itertools
import math

import pytest
import torch
from diffusers import AmusedScheduler

from cotlab.masked_ar.decoding import mask_schedule
from cotlab.masked_ar.model import MaskedAR
from cotlab.preference.grpo import (Rollouts, choice_temperatures, group_advantages, grpo_objective, remask_logp,
                                    remask_masks, remask_ratios, step_log_probability, trajectory_logp)

N, K, T = 3, 3, 3  # tokens, codes, steps: 3 · 3^3 … small enough to enumerate every decoding
MASK = K


class TinyPolicy:
    """Logits (B, N, K) of a fixed random function of the whole state (B, N) in [0, K] ([MASK] = K)."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.weight = 2 * torch.randn(N * (K + 1), N * K, generator=g, dtype=torch.float64)

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        one_hot = torch.nn.functional.one_hot(states, K + 1).reshape(len(states), -1).double()
        return (one_hot @ self.weight).reshape(len(states), N, K)


def enumerate_decodings(policy: TinyPolicy) -> dict[tuple, float]:
    """Every decoding without choice noise and its exact probability, by brute force: at each step
    every joint draw of the masked positions' tokens, the ``mask_schedule`` count of least confident
    ones re-masked. Keys: the tuple of states after each step."""
    counts = mask_schedule(T, N)
    out: dict[tuple, float] = {}

    def walk(state: tuple, t: int, prob: float, path: tuple) -> None:
        if t == T:
            out[path] = out.get(path, 0.0) + prob
            return
        p = policy(torch.tensor([state]))[0].softmax(-1)  # (N, K)
        masked = [i for i in range(N) if state[i] == MASK]
        for draw in itertools.product(range(K), repeat=len(masked)):
            q = math.prod(float(p[i, v]) for i, v in zip(masked, draw))
            confidence = {i: float(p[i, v]) for i, v in zip(masked, draw)}
            keep_masked = set(sorted(masked, key=confidence.get)[:counts[t]])
            nxt = list(state)
            for i, v in zip(masked, draw):
                nxt[i] = MASK if i in keep_masked else v
            walk(tuple(nxt), t + 1, prob * q, path + (tuple(nxt),))

    walk((MASK,) * N, 0, 1.0, ())
    return out


def estimated_log_probability(policy: TinyPolicy, path: tuple, choice_temperature: float = 0.0) -> float:
    """Σ_t step_log_probability along one decoding (``path``: the states after each step)."""
    states = torch.tensor([(MASK,) * N] + list(path[:-1]))  # (T, N) before each step
    after = torch.tensor(list(path))
    committed, remasked = (states == MASK) & (after != MASK), after == MASK
    logp = policy(states).log_softmax(-1)
    final = after[-1].expand(T, N)
    return float(step_log_probability(logp, final, committed, remasked, choice_temperatures(T, choice_temperature)).sum())


def test_step_log_probability_is_exact_without_choice_noise():
    policy = TinyPolicy()
    decodings = enumerate_decodings(policy)
    assert sum(decodings.values()) == pytest.approx(1.0, abs=1e-9)
    assert len(decodings) > 20  # many orders and outcomes, not one forced path
    for path, prob in decodings.items():
        assert math.exp(estimated_log_probability(policy, path)) == pytest.approx(prob, rel=1e-6, abs=1e-12)


def tokens_only_log_probability(policy: TinyPolicy, path: tuple) -> float:
    """The committed tokens' log-probabilities alone (Mask-GRPO's "candidate 2")."""
    states = torch.tensor([(MASK,) * N] + list(path[:-1]))
    after = torch.tensor(list(path))
    committed = (states == MASK) & (after != MASK)
    chosen = policy(states).log_softmax(-1).gather(-1, after[-1].expand(T, N)[..., None])[..., 0]
    return float((chosen * committed).sum())


def test_the_remasked_term_matters():
    """Without the probability of falling below the cut-off, the token terms are no distribution."""
    policy = TinyPolicy(1)
    total = sum(math.exp(tokens_only_log_probability(policy, path)) for path in enumerate_decodings(policy))
    assert total > 1.5


def test_enumeration_matches_amused_scheduler_sampling():
    """The brute force describes the decoder cotlab really runs: diffusers' AmusedScheduler without
    choice noise, 40 000 decodings of the tiny model, frequencies within 5 standard errors."""
    policy = TinyPolicy(2)
    exact = enumerate_decodings(policy)
    scheduler = AmusedScheduler(mask_token_id=MASK, masking_schedule="cosine")
    scheduler.set_timesteps(T, temperature=(0.0, 0.0))
    B = 40_000
    generator = torch.Generator().manual_seed(0)
    tokens = torch.full((B, N), MASK)
    history = []
    for t in scheduler.timesteps:
        tokens = scheduler.step(policy(tokens).float(), t, tokens, generator=generator).prev_sample
        history.append(tokens)
    paths = torch.stack(history, 1)  # (B, T, N)
    seen: dict[tuple, int] = {}
    for row in paths.tolist():
        key = tuple(tuple(s) for s in row)
        seen[key] = seen.get(key, 0) + 1
    assert set(seen) <= set(exact)
    for path, prob in exact.items():
        frequency = seen.get(path, 0) / B
        assert abs(frequency - prob) <= 5 * math.sqrt(prob * (1 - prob) / B) + 1e-4


def test_choice_noise_limits():
    """With choice noise τ the re-masked term is P(drawn token + τ·g below the cut-off): τ → 0 gives
    the exact step, and τ → ∞ gives e^-1 per re-masked position (P(g < 0) for Gumbel noise), so the
    estimate is the token terms minus the number of re-maskings (2 + 1 here)."""
    policy = TinyPolicy(3)
    path = max(enumerate_decodings(policy).items(), key=lambda kv: kv[1])[0]
    remaskings = sum(n for n in mask_schedule(T, N))
    assert remaskings == 3
    assert estimated_log_probability(policy, path, 1e5) == pytest.approx(
        tokens_only_log_probability(policy, path) - remaskings, abs=1e-3)
    assert estimated_log_probability(policy, path, 1e-3) == pytest.approx(estimated_log_probability(policy, path, 0.0),
                                                                          abs=1e-6)


def test_choice_temperatures_anneal_as_amused_scheduler():
    assert choice_temperatures(4, 4.5).tolist() == [4.5, 3.0, 1.5, 0.0]  # linear from τ_1 to 0
    scheduler = AmusedScheduler(mask_token_id=MASK)
    scheduler.set_timesteps(6, temperature=(2.0, 0.0))
    assert torch.allclose(choice_temperatures(6, 2.0), scheduler.temperatures)


class GuidedTinyPolicy:
    """``TinyPolicy`` as a ``MaskedAR`` with a text prefix: a caption doubles its logits ℓ, the empty
    caption leaves them, so guidance w gives ℓ + w·(2ℓ − ℓ) = (1 + w)·ℓ. MaskedAR's own ``prefix`` and
    ``guided_logits`` run on it."""

    device, mask_id = torch.device("cpu"), MASK
    prefix, guided_logits = MaskedAR.prefix, MaskedAR.guided_logits

    def __init__(self, seed: int):
        self.tiny = TinyPolicy(seed)

    def encode_text(self, captions):
        text = torch.tensor([[[1.0 if caption else 0.0]] for caption in captions])  # (B, 1, 1)
        return text, torch.ones(len(captions), 1, dtype=torch.bool)

    def __call__(self, states, text, pad):
        return self.tiny(states) * (1 + text)


def recorded(paths: list[tuple]) -> Rollouts:
    """Rollouts of decodings given as their states after each step (``enumerate_decodings``' keys)."""
    after = torch.tensor(paths)  # (B, T, N)
    states = torch.cat([torch.full_like(after[:, :1], MASK), after[:, :-1]], 1)  # before each step
    B = len(paths)
    return Rollouts(["a caption"] * B, [{}] * B, list(range(7, 7 + B)), states, (states == MASK) & (after != MASK),
                    after == MASK, after[:, -1], torch.zeros(B, 3, 1, 1))


def test_trajectory_logp_is_the_exact_probability_of_the_guided_tempered_decoding():
    """Under guidance w = 3 at sampling temperature 2 the policy decodes with logits (1 + 3)·ℓ/2 = 2ℓ:
    without choice noise the steps' log-probabilities sum to the brute-force probability of each
    decoding under 2ℓ; with it, each step is ``step_log_probability`` at that step's τ_t."""
    policy = GuidedTinyPolicy(4)
    doubled = lambda states: 2 * policy.tiny(states)
    exact = sorted(enumerate_decodings(doubled).items(), key=lambda kv: -kv[1])[:4]  # the likeliest four
    rollouts = recorded([path for path, _ in exact])
    with torch.no_grad():
        steps = trajectory_logp(policy, rollouts, cfg=3.0, sample_temperature=2.0, choice_temperature=0.0)  # (B, T)
        noisy = trajectory_logp(policy, rollouts, cfg=3.0, sample_temperature=2.0, choice_temperature=4.5)
    assert steps.shape == (4, T)
    assert steps.sum(1).exp().tolist() == pytest.approx([prob for _, prob in exact], rel=1e-4)
    for row, (path, _) in enumerate(exact):
        states = rollouts.states[row]
        by_step = step_log_probability(doubled(states).log_softmax(-1), rollouts.tokens[row].expand(T, N),
                                       rollouts.committed[row], rollouts.remasked[row], choice_temperatures(T, 4.5))
        assert noisy[row].tolist() == pytest.approx(by_step.tolist(), rel=1e-4, abs=1e-6)


def test_remask_logp_sums_the_guided_log_probabilities_of_the_masked_tokens():
    """Brute force, position by position: draw k of row b masks ``remask_masks``' positions; its value is
    Σ_{i masked} log softmax((1 + w)·ℓ/τ)_i(k_i) at the masked input."""
    policy = GuidedTinyPolicy(5)
    rollouts = recorded([((0, MASK, 2), (0, 1, MASK), (0, 1, 2)), ((1, MASK, MASK), (1, 2, MASK), (1, 2, 0))])
    masks = remask_masks(rollouts.seeds, N, 4, min_ratio=0.0)  # ratios ¼, ½, ¾, 0.999: ⌈0.75⌉ = 1, 2, 3, 3 positions
    assert masks.sum(-1).tolist() == [[1, 2, 3, 3]] * 2
    for cfg in (1.0, 2.0):  # w = 1: the conditional logits alone, 2ℓ
        with torch.no_grad():
            got = remask_logp(policy, rollouts, draws=4, cfg=cfg, sample_temperature=1.5, min_ratio=0.0)  # (B, K)
        for b in range(2):
            tokens = rollouts.tokens[b]
            for k in range(4):
                logits = (1 + cfg) * policy.tiny(tokens.masked_fill(masks[b, k], MASK)[None])[0] / 1.5  # (N, K)
                expected = sum(float(logits[i].log_softmax(-1)[tokens[i]]) for i in range(N) if masks[b, k, i])
                assert got[b, k].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)  # float32


def test_the_likelihoods_default_to_the_decoding_they_score():
    """Without arguments both estimators score the decoder's defaults (``MaskedAR.paths``: guidance 3,
    temperature 1, choice temperature 4.5) and MaskGRPO's two draws from r_min = 0.6 (the guidance term
    of DPO calls ``trajectory_logp`` so)."""
    decoding = {k: p.default for k, p in inspect.signature(MaskedAR.paths).parameters.items()}
    policy = GuidedTinyPolicy(6)
    rollouts = recorded([path for path in list(enumerate_decodings(policy.tiny))[:2]])
    with torch.no_grad():
        assert torch.equal(trajectory_logp(policy, rollouts), trajectory_logp(
            policy, rollouts, decoding["cfg"], decoding["sample_temperature"], decoding["choice_temperature"]))
        assert torch.equal(remask_logp(policy, rollouts), remask_logp(
            policy, rollouts, 2, decoding["cfg"], decoding["sample_temperature"], 0.6))


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    A, kept = group_advantages(rewards, 4)
    assert kept.tolist() == [True] * 4 + [False] * 4  # an all-equal group teaches nothing
    assert A[:4].tolist() == pytest.approx([0.5 / 0.5001, -0.5 / 0.5001] * 2)  # mean ½, std ½
    assert A[4:].tolist() == [0.0] * 4
    # groups of 3: (0, 0, 3) has mean 1 and std √((1 + 1 + 4)/3) = √2 (the population std)
    A, kept = group_advantages(torch.tensor([0.0, 0.0, 3.0, 2.0, 2.0, 2.0]), 3)
    assert A.tolist() == pytest.approx([-1 / (2**0.5 + 1e-4)] * 2 + [2 / (2**0.5 + 1e-4)] + [0.0] * 3)
    assert kept.tolist() == [True] * 3 + [False] * 3


def test_a_group_whose_spread_is_exactly_min_spread_is_skipped():
    """(0, 1) has std ½: skipped at min_spread ½ ("at most"), kept at 0.49 with A = ±½/(½ + 1e-4)."""
    rewards = torch.tensor([0.0, 1.0])
    assert group_advantages(rewards, 2, min_spread=0.5)[1].tolist() == [False, False]
    A, kept = group_advantages(rewards, 2, min_spread=0.49)
    assert kept.tolist() == [True, True] and A.tolist() == pytest.approx([-0.5 / 0.5001, 0.5 / 0.5001])


def test_grpo_objective_by_hand():
    advantages = torch.tensor([1.0, -1.0])
    old = torch.zeros(2, 1)
    on_policy, logs = grpo_objective(old.clone(), old, advantages)  # ρ = 1: −mean(A) = 0
    assert float(on_policy) == pytest.approx(0.0) and float(logs["clipped"]) == 0.0
    moved = torch.log(torch.tensor([[1.5], [1.5]]))  # ρ = 1.5 for both, clip 0.2
    loss, logs = grpo_objective(moved, old, advantages, clip=0.2)
    # row 1: min(1.5·1, 1.2·1) = 1.2; row 2: min(1.5·−1, 1.2·−1) = −1.5 → J = −0.15
    assert float(loss) == pytest.approx(0.15) and float(logs["clipped"]) == 1.0
    reference = torch.log(torch.tensor([[0.5], [0.5]]))  # k3 with log r = log(0.5/1.5)
    _, logs = grpo_objective(moved, old, advantages, reference_logp=reference, kl_beta=0.1)
    r = 0.5 / 1.5
    assert float(logs["kl"]) == pytest.approx(r - math.log(r) - 1)


def test_grpo_objective_clips_pessimistically_by_hand():
    """Clip ε = 0.2 (the default), two units per image. A = 2: ρ = 1.1 (inside) gives 2.2; ρ = 0.5 gives
    min(1.0, 0.8·2) = 1.0. A = −1: ρ = 0.5 gives min(−0.5, −0.8) = −0.8; ρ = 1.5 gives min(−1.5, −1.2) = −1.5.
    J = (2.2 + 1.0 − 0.8 − 1.5)/4 = 0.225; three of four ratios lie outside [0.8, 1.2]. Gradient of −J in
    log π: −ρ·A/4 where the unclipped term is the minimum, 0 where the clipped one is."""
    ratios = torch.tensor([[1.1, 0.5], [0.5, 1.5]])
    logp = ratios.log().requires_grad_()
    loss, logs = grpo_objective(logp, torch.zeros(2, 2), torch.tensor([2.0, -1.0]))
    assert loss.item() == pytest.approx(-0.225) and logs["clipped"].item() == 0.75
    loss.backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-0.55, -0.25, 0.0, 0.375])
    # with a k3 KL to a reference at log π_ref = 0: KL = 1/ρ + log ρ − 1 per unit, J − 0.1·mean KL
    kl = [1 / r + math.log(r) - 1 for r in (1.1, 0.5, 0.5, 1.5)]
    loss, logs = grpo_objective(ratios.log(), torch.zeros(2, 2), torch.tensor([2.0, -1.0]),
                                reference_logp=torch.zeros(2, 2), kl_beta=0.1)
    assert logs["kl"].item() == pytest.approx(sum(kl) / 4)
    assert loss.item() == pytest.approx(-(0.225 - 0.1 * sum(kl) / 4))


def test_remask_draws_are_fixed_by_the_seed():
    assert remask_ratios(2) == pytest.approx([0.8, 0.999])  # 0.6 + 0.4·(k + 1)/2, the last capped
    assert remask_ratios(4, min_ratio=0.2) == pytest.approx([0.4, 0.6, 0.8, 0.999])
    a, b = remask_masks([7, 8], 16, 2), remask_masks([7, 8], 16, 2)
    assert torch.equal(a, b)
    assert a.sum(-1).tolist() == [[13, 16], [13, 16]]  # ⌈0.8·16⌉, ⌈0.999·16⌉
    assert not torch.equal(a[0], a[1])
    draws = remask_masks([7], 16, 4, min_ratio=0.2)[0]  # 7, 10, 13, 16 positions, each draw its own order:
    assert draws.sum(-1).tolist() == [7, 10, 13, 16]
    assert any(not (draws[k] <= draws[k + 1]).all() for k in range(3))  # not one order cut shorter and shorter


def test_rollouts_record_the_decoding_cotlab_runs():
    """On the shipped maskgit: the recorded states start all masked, each step commits as many
    tokens as the schedule says, re-masked positions are exactly those still masked, and the
    recorded decoding is the one ``sample`` makes from the same seeds."""
    from cotlab.harness import load_checkpoint
    from cotlab.preference.grpo import remask_logp, rollout, trajectory_logp
    from cotlab.sampling import sample

    model = load_checkpoint("maskgit")
    captions = ["a red circle", "two blue squares"]
    r = rollout(model, captions, [{}, {}], [3, 4], steps=4)
    B, T, Ntok = r.states.shape
    assert (B, T) == (2, 4) and bool((r.states[:, 0] == model.mask_id).all())
    left = [Ntok] + mask_schedule(T, Ntok)
    assert r.committed.sum(-1).tolist() == [[a - b for a, b in zip(left, left[1:])]] * 2
    assert r.remasked.sum(-1).tolist() == [mask_schedule(T, Ntok)] * 2
    assert torch.equal(r.tokens, sample(model, captions, [3, 4], steps=4).tokens)
    with torch.no_grad():
        steps = trajectory_logp(model, r, choice_temperature=4.5)
        draws = remask_logp(model, r, draws=2)
    assert steps.shape == (2, 4) and bool(torch.isfinite(steps).all()) and bool((steps <= 0).all())
    assert draws.shape == (2, 2) and bool((draws <= 0).all())


def test_groups_a_learned_reward_cannot_tell_apart_are_skipped():
    rewards = torch.tensor([0.97, 0.98, 0.99, 0.96, 0.9, 0.1, 0.8, 0.2])  # all right by the ORM's word; mixed
    _, kept = group_advantages(rewards, 4, min_spread=0.05)
    assert kept.tolist() == [False] * 4 + [True] * 4
    A, kept = group_advantages(rewards, 4)  # without a spread the first group's ±0.01 becomes ±1.3
    assert kept.all() and float(A[:4].abs().max()) > 1
