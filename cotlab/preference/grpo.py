"""GRPO for a masked generator: online RL with a verifier's reward, on the decoding it really does.

*Group Relative Policy Optimization* (DeepSeekMath, arXiv 2402.03300) as the RL follow-ups of the
paper apply it to images (Mask-GRPO arXiv 2510.13418, MaskGRPO arXiv 2510.02880, Flow-GRPO arXiv
2505.05470). Per training prompt c, decode G images x_1 … x_G with the policy π_θ exactly as at test
time (MaskGIT, 8 steps, CFG 3 — and the log-probability below is that of the *guided* policy that
sampled, not of the unguided model as in T2I-R1), score them with a reward r (the fine-tuned ORM,
PARM, or the exact evaluator as an oracle), and normalise within the group:

    A_g = (r_g − mean(r)) / (std(r) + 1e-4)          (a group whose rewards are all equal teaches nothing: skipped)

Each image's log-likelihood is split into units u (decoding steps, or re-masking draws, below) and
the clipped surrogate with a k3 KL to the frozen reference is maximised:

    ρ_u = exp(log π_θ(u) − log π_old(u)),   J = mean_u [ min(ρ_u A, clip(ρ_u, 1 ± ε) A) − β KL_u ],
    KL_u = exp(log π_ref(u) − log π_θ(u)) − (log π_ref(u) − log π_θ(u)) − 1   (k3: unbiased, ≥ 0).

**Two estimators of log π(x | c)** — a masked generator has no exact likelihood of an image:

(a) ``trajectory`` (Mask-GRPO's): replay the recorded decoding. At step t, from state s_{t−1} the
    decoder samples a token at every masked position, commits the set C_t of the most confident and
    re-masks the rest R_t. With p = softmax(guided logits / τ_sample) at s_{t−1} and the cut-off
    κ_t = min_{i ∈ C_t} log p_i(k_i):

        log π(step t) = Σ_{i ∈ C_t} log p_i(k_i) + Σ_{r ∈ R_t} log Σ_v p_r(v) · F_τt(κ_t − log p_r(v)),

    F_τ(z) = exp(−e^{−z/τ}) the Gumbel CDF of the choice noise τ_t·g: the probability that the token
    drawn at r falls below the cut-off. With no choice noise (τ = 0, F a step) this is the *exact*
    probability of the step (the tests check it against a brute-force enumeration of every decoding
    of a tiny model); with noise it takes the cut-off at its noise-free value.
(b) ``remask`` (MaskGRPO's): re-mask the final image at fixed seeds (ratios rising to ~1) and sum the
    guided log-probabilities of the true tokens at the masked positions, one forward pass per draw —
    cheaper, and blind to the order the tokens were decoded in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from cotlab.masked_ar.model import MaskedAR
from cotlab.preference.policy import REWARDS, PolicyConfig, load_reward
from cotlab.sampling import path_seed

ESTIMATORS = ("trajectory", "remask")


@dataclass
class Rollouts:
    """G decodings of each prompt, as recorded for replay. ``states`` (B, T, N): the tokens *before*
    each step ([MASK] where not yet committed); ``committed`` / ``remasked`` (B, T, N) bool: the
    positions committed at step t / masked before and after it; ``tokens`` (B, N) the final image's
    tokens; ``images`` (B, 3, H, W) in [0, 1]; one ``seed`` per row."""
    captions: list[str]
    metas: list[dict]
    seeds: list[int]
    states: torch.Tensor
    committed: torch.Tensor
    remasked: torch.Tensor
    tokens: torch.Tensor
    images: torch.Tensor


@torch.no_grad()
def rollout(policy: MaskedAR, captions: list[str], metas: list[dict], seeds: list[int], **decoding) -> Rollouts:
    """Decode one image per caption with ``policy.paths`` (``decoding``: steps, cfg, temperatures, as
    at test time), recording the state before every step."""
    paths = policy.paths(captions, seeds, **decoding)
    states = []
    while not bool(paths.done().all()):
        states.append(paths.tokens.clone())
        paths.advance()
    states = torch.stack(states, 1)  # (B, T, N)
    after = torch.cat([states[:, 1:], paths.tokens[:, None]], 1)  # (B, T, N): the tokens after each step
    mask = policy.mask_id
    return Rollouts(list(captions), list(metas), list(seeds), states, (states == mask) & (after != mask),
                    (after == mask), paths.tokens.clone(), paths.images(final=True))


def choice_temperatures(steps: int, choice_temperature: float) -> torch.Tensor:
    """τ_t of each step (T,), as ``AmusedScheduler`` anneals it: linearly from τ_1 to 0."""
    return torch.linspace(choice_temperature, 0.0, steps)


def step_log_probability(logp: torch.Tensor, tokens: torch.Tensor, committed: torch.Tensor,
                         remasked: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """log π(step) of estimator (a) (module docstring) for M steps: (M,). ``logp`` (M, N, K) the
    step's log-probabilities at its state, ``tokens`` (M, N) the committed tokens (any value
    elsewhere), ``committed`` and ``remasked`` (M, N) bool, ``tau`` (M,) the choice temperature."""
    chosen = logp.gather(-1, tokens[..., None])[..., 0]  # (M, N): log p_i(k_i)
    committed_term = (chosen * committed).sum(-1)  # (M,)
    kappa = chosen.masked_fill(~committed, math.inf).amin(-1)  # (M,) the cut-off
    z = kappa[:, None, None] - logp  # (M, N, K): how far each candidate token lies below the cut-off
    tau = tau.to(logp)[:, None, None]
    noisy = -torch.exp((-z / tau.clamp_min(1e-6)).clamp(max=50.0))  # log F_τ(z), finite, for τ > 0
    exact = torch.zeros_like(z).masked_fill(z <= 0, -1e4)  # log [z > 0] for τ = 0 (e^-1e4 = 0, with finite gradients)
    below = torch.logsumexp(logp + torch.where(tau > 0, noisy, exact), -1)  # (M, N): log P(drawn below the cut-off)
    remasked_term = (below.clamp_min(-69.0) * remasked).sum(-1)  # (M,) (e^-69 ≈ 1e-30: a step the policy cannot take)
    return committed_term + remasked_term


def trajectory_logp(policy: MaskedAR, rollouts: Rollouts, cfg: float = 3.0, sample_temperature: float = 1.0,
                    choice_temperature: float = 4.5) -> torch.Tensor:
    """Estimator (a): log π(step t) of every recorded step (B, T), all steps in one batched pass of
    the guided policy (two forward passes per step with CFG), differentiable in ``policy``."""
    B, T, N = rollouts.states.shape
    captions = [c for c in rollouts.captions for _ in range(T)]
    states = rollouts.states.reshape(B * T, N).to(policy.device)
    logits = policy.guided_logits(states, policy.prefix(captions, cfg), cfg) / sample_temperature  # (B·T, N, K)
    tokens = rollouts.tokens.to(policy.device).repeat_interleave(T, 0)  # (B·T, N): a committed token never changes
    tau = choice_temperatures(T, choice_temperature).repeat(B)  # (B·T,)
    return step_log_probability(logits.float().log_softmax(-1), tokens, rollouts.committed.reshape(B * T, N).to(policy.device),
                                rollouts.remasked.reshape(B * T, N).to(policy.device), tau).reshape(B, T)


def remask_ratios(draws: int, min_ratio: float = 0.6) -> list[float]:
    """MaskGRPO's re-masking ratios r_k = min(r_min + (1 − r_min)(k+1)/K, 0.999), k = 0 … K−1."""
    return [min(min_ratio + (1 - min_ratio) * (k + 1) / draws, 0.999) for k in range(draws)]


def remask_masks(seeds: list[int], N: int, draws: int, min_ratio: float = 0.6) -> torch.Tensor:
    """(B, K, N) bool: draw k of row b masks ⌈r_k·N⌉ positions chosen by the seed (row seed, k) — the
    same masks for the old, the new and the reference policy."""
    masks = torch.zeros(len(seeds), draws, N, dtype=torch.bool)
    for b, seed in enumerate(seeds):
        for k, ratio in enumerate(remask_ratios(draws, min_ratio)):
            order = torch.randperm(N, generator=torch.Generator().manual_seed(path_seed(seed, k)))
            masks[b, k, order[:max(1, math.ceil(ratio * N))]] = True
    return masks


def remask_logp(policy: MaskedAR, rollouts: Rollouts, draws: int = 2, cfg: float = 3.0,
                sample_temperature: float = 1.0, min_ratio: float = 0.6) -> torch.Tensor:
    """Estimator (b): Σ_{i masked} log p(k_i | the rest, c) of each re-masking draw (B, K), under the
    guided policy, differentiable in ``policy``."""
    B, N = rollouts.tokens.shape
    masks = remask_masks(rollouts.seeds, N, draws, min_ratio).reshape(B * draws, N).to(policy.device)
    tokens = rollouts.tokens.to(policy.device).repeat_interleave(draws, 0)  # (B·K, N)
    captions = [c for c in rollouts.captions for _ in range(draws)]
    logits = policy.guided_logits(tokens.masked_fill(masks, policy.mask_id), policy.prefix(captions, cfg), cfg)
    logp = (logits.float() / sample_temperature).log_softmax(-1).gather(-1, tokens[..., None])[..., 0]  # (B·K, N)
    return (logp * masks).sum(-1).reshape(B, draws)


def group_advantages(rewards: torch.Tensor, group: int, min_spread: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (B,), kept (B,) bool) for rewards (B,) in consecutive groups of ``group`` images of one
    prompt: A = (r − mean) / (std + 1e-4) within each group; groups whose rewards are all equal — a
    std of at most ``min_spread`` — are not kept (A = 0). A learned reward is never exactly equal: a
    group its model calls all right differs in the third decimal, and dividing by that std would turn
    the reward model's noise into advantages of ±1, so GRPO with a learned reward sets a spread."""
    r = rewards.float().reshape(-1, group)  # (prompts, G)
    std = r.std(1, keepdim=True, unbiased=False)
    advantages = (r - r.mean(1, keepdim=True)) / (std + 1e-4)
    kept = (std > min_spread).expand_as(r)
    return (advantages * kept).reshape(-1), kept.reshape(-1)


def grpo_objective(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                   reference_logp: torch.Tensor | None = None, clip: float = 0.2, kl_beta: float = 0.0
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss −J (module docstring) over units (B, U) — steps or draws — of B images with
    advantages (B,); and what to log: the clipped share and the KL (k3) to the reference."""
    ratio = torch.exp(logp - old_logp)  # (B, U)
    A = advantages[:, None].to(logp)
    surrogate = torch.minimum(ratio * A, ratio.clamp(1 - clip, 1 + clip) * A)
    logs = {"clipped": ((ratio - 1).abs() > clip).float().mean().detach()}
    if reference_logp is not None:
        delta = reference_logp - logp
        kl = torch.exp(delta) - delta - 1  # (B, U) k3
        logs["kl"] = kl.mean().detach()
        surrogate = surrogate - kl_beta * kl
    return -surrogate.mean(), logs


# --- the LightningModule --------------------------------------------------------------------------
@dataclass
class GRPOConfig(PolicyConfig):
    """Online GRPO from the ``base`` generator; the defaults are the ``cpu`` profile. One rollout
    batch (``prompts_per_step`` × ``group`` decodings) feeds ``updates`` optimiser steps on equal
    shares of it, so from the second on the ratio ρ leaves 1 and the clip matters; ``max_steps``
    counts optimiser steps."""
    reward: str = "orm"  # orm | parm | oracle
    estimator: str = "trajectory"  # trajectory (Mask-GRPO) | remask (MaskGRPO)
    group: int = 8  # G decodings per prompt
    prompts_per_step: int = 8
    updates: int = 2  # optimiser steps per rollout batch
    min_spread: float = 0.05  # groups whose reward std is at most this teach nothing: skipped
    clip: float = 0.2  # ε
    kl_beta: float = 0.01  # β of the k3 KL to the reference
    remask_draws: int = 2
    decoding_steps: int = 8  # decoding as at test time (cotlab generate's defaults)
    cfg: float = 3.0
    sample_temperature: float = 1.0
    choice_temperature: float = 4.5
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_steps: int = 240
    max_minutes: float | None = 18.0
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(group=2, prompts_per_step=2, max_steps=2, warmup_steps=1, max_minutes=1.0),
        "gpu": dict(group=16, prompts_per_step=32, max_steps=2000, max_minutes=120.0),
    }

    def __post_init__(self):
        super().__post_init__()
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator '{self.estimator}': choose one of {', '.join(ESTIMATORS)}")
        if self.reward not in REWARDS:
            raise ValueError(f"unknown reward '{self.reward}': choose one of {', '.join(REWARDS)}")


class GRPO(MaskedAR):
    """A MaskGIT generator trained online by GRPO with a verifier's reward (module docstring)."""

    Config = GRPOConfig
    PROGRESS = ("reward", "exact")
    LOG_EVERY_N_STEPS = 1  # a rollout batch is a few seconds: log each one

    def __init__(self, config: GRPOConfig):
        super().__init__(config)
        self.automatic_optimization = False  # several optimiser steps per rollout batch

    @property
    def decoding(self) -> dict:
        c = self.config
        return dict(steps=c.decoding_steps, cfg=c.cfg, sample_temperature=c.sample_temperature,
                    choice_temperature=c.choice_temperature)

    def unit_logp(self, model: MaskedAR, rollouts: Rollouts) -> torch.Tensor:
        """log π of each unit (B, U) under ``model``: decoding steps (trajectory) or draws (remask)."""
        c = self.config
        if c.estimator == "trajectory":
            return trajectory_logp(model, rollouts, c.cfg, c.sample_temperature, c.choice_temperature)
        return remask_logp(model, rollouts, c.remask_draws, c.cfg, c.sample_temperature)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        """Rollouts of a batch of prompts, their rewards and advantages, then ``updates`` clipped steps."""
        c, G = self.config, self.config.group
        metas = [m for m in batch["meta"] for _ in range(G)]
        captions = [m["prompt"] for m in metas]
        seeds = [path_seed(self.global_step, i) for i in range(len(captions))]
        self.eval()
        rollouts = rollout(self, captions, metas, seeds, **self.decoding)
        self.train()
        rewards = load_reward(c.reward)(rollouts.images, captions, metas)  # (B,) the reward trained on
        exact = load_reward("oracle")(rollouts.images, captions, metas)  # (B,) the evaluator's verdict on the same images
        advantages, kept = group_advantages(rewards, G, c.min_spread)
        rows = kept.nonzero()[:, 0]
        logs = {"reward": rewards.mean(), "exact": exact.mean(), "kept": kept.float().mean()}
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        if len(rows):
            with torch.no_grad():
                kept_rollouts = _select(rollouts, rows)
                old = self.unit_logp(self, kept_rollouts)
                reference = self.unit_logp(self.frozen("base"), kept_rollouts) if c.kl_beta else None
        for share in torch.arange(len(rows)).tensor_split(c.updates):  # `updates` shares, empty if nothing is kept
            optimizer.zero_grad()
            if len(share):
                part = _select(kept_rollouts, share)
                loss, more = grpo_objective(self.unit_logp(self, part), old[share], advantages[rows[share]].to(self.device),
                                            None if reference is None else reference[share], c.clip, c.kl_beta)
                self.manual_backward(loss)
                logs.update(loss=loss.detach(), **more)
            elif self.trainer.world_size > 1:  # DDP averages gradients in each backward: a rank with none adds zeros
                self.manual_backward(sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0)
            self.clip_gradients(optimizer, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
            optimizer.step()  # a step without gradients (nothing kept) still counts, so max_steps ends training
            scheduler.step()
        for name, value in logs.items():
            self.log(f"train_{name}", value, prog_bar=name in self.PROGRESS, batch_size=len(captions))


def _select(rollouts: Rollouts, rows: torch.Tensor) -> Rollouts:
    """The rollouts of ``rows`` (R,)."""
    idx = rows.tolist()
    return Rollouts([rollouts.captions[i] for i in idx], [rollouts.metas[i] for i in idx],
                    [rollouts.seeds[i] for i in idx], rollouts.states[rows], rollouts.committed[rows],
                    rollouts.remasked[rows], rollouts.tokens[rows], rollouts.images[rows])
