"""Direct Preference Optimization for a masked token generator.

*Direct Preference Optimization* (Rafailov et al., arXiv 2305.18290) trains a policy π_θ from pairs of
a chosen image x⁺ and a rejected one x⁻ for the same caption c, against a frozen reference π_ref:

    L = − log σ(β [(log π_θ(x⁺|c) − log π_ref(x⁺|c)) − (log π_θ(x⁻|c) − log π_ref(x⁻|c))]),

the implicit reward of an image being r(x) = β (log π_θ(x|c) − log π_ref(x|c)). A masked generator has no
exact log π(x|c); as in the paper's released ``train_dpo.py`` it is estimated by masked training's
own quantity — mask positions with the cosine schedule and sum the log-probabilities of the true
tokens there, given the rest:

    log π(x|c) ≈ Σ_{i ∈ M} log p_θ(k_i | k_{∖M}, c).

The released code masks chosen and rejected *independently* (different shares and positions), which
adds noise to the margin; here both images of a pair share one mask M by default, and policy and
reference always see the same masked input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from cotlab.errors import CotlabError
from cotlab.masked_ar.model import MaskedAR, random_mask
from cotlab.preference.data import PreferenceSpec, load_or_build, pairs
from cotlab.preference.grpo import group_advantages, grpo_objective, rollout, trajectory_logp
from cotlab.preference.policy import PolicyConfig, load_reward
from cotlab.sampling import path_seed


def masked_logp(model: MaskedAR, tokens: torch.Tensor, text: torch.Tensor, text_pad: torch.Tensor,
                masked: torch.Tensor) -> torch.Tensor:
    """Σ_{i masked} log p(k_i | unmasked tokens, caption) for each row: (B,). tokens (B, N) are the
    image's codes, masked (B, N) True where the position is replaced by [MASK]."""
    logits = model(tokens.masked_fill(masked, model.mask_id), text, text_pad)  # (B, N, K)
    logp = logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]  # (B, N): log p of the true token
    return (logp * masked).sum(-1)


def pair_masks(B: int, N: int, shared: bool = True, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The masks (B, N) of the chosen and the rejected images of B pairs: one draw for both
    (``shared``), or two independent ones as the released code does."""
    chosen = random_mask(B, N, device)
    return chosen, chosen if shared else random_mask(B, N, device)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO loss (module docstring), mean over pairs, from the four log-likelihoods (B,) each; and
    what to log: the reward margin r(x⁺) − r(x⁻) and the share of pairs it ranks right (implicit-reward
    accuracy)."""
    chosen = beta * (policy_chosen - reference_chosen)  # (B,) implicit rewards
    rejected = beta * (policy_rejected - reference_rejected)
    margin = chosen - rejected
    return -F.logsigmoid(margin).mean(), {"margin": margin.mean().detach(),
                                           "reward_accuracy": (margin > 0).float().mean()}


# --- the LightningModule --------------------------------------------------------------------------
@dataclass
class DPOConfig(PolicyConfig):
    """DPO on preference pairs (``cotlab.preference.data``) of the ``base`` generator's own samples;
    the defaults are the ``cpu`` profile. ``guidance`` adds the paper's reward-model term on fresh
    samples: ``released`` as its code builds it (a constant: no gradient), ``training`` as a GRPO term
    that does train (``cotlab.preference.grpo``)."""
    label: str = "orm"  # which label makes the pairs: orm | parm | oracle
    beta: float = 0.1
    shared_mask: bool = True  # chosen and rejected under one mask (False: the released code's two)
    prompts: int = 600  # preference data: prompts × samples of the base at temperature 1.5
    samples: int = 8
    data_seed: int = 1
    pairs_per_prompt: int = 8
    guidance: str = "none"  # none | released | training
    reward_coef: float = 0.1
    guidance_group: int = 4  # fresh samples per caption for the guidance term (G)
    guidance_prompts: int = 2  # captions of the batch that get fresh samples
    batch_size: int = 64  # pairs
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_steps: int = 150  # ≈ 4 passes over the ~2,300 pairs: 500 (14 passes) overfitted (colour binding fell)
    max_minutes: float | None = 15.0
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(prompts=12, samples=4, batch_size=4, warmup_steps=1, max_steps=3, max_minutes=1.0,
                      guidance_group=2, guidance_prompts=1),
        "gpu": dict(prompts=4000, samples=16, batch_size=256, max_steps=3000, max_minutes=60.0),
    }

    def __post_init__(self):
        super().__post_init__()
        if self.guidance not in GUIDANCE:
            raise ValueError(f"unknown guidance '{self.guidance}': choose one of {', '.join(GUIDANCE)}")

    def data_spec(self) -> PreferenceSpec:
        return PreferenceSpec(generator=self.base, prompts=self.prompts, samples=self.samples, seed=self.data_seed)


GUIDANCE = ("none", "released", "training")


class DPO(MaskedAR):
    """A MaskGIT generator trained by DPO against its frozen base (module docstring)."""

    Config = DPOConfig
    PROGRESS = ("reward_accuracy",)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The DPO loss of a batch of pairs {chosen, rejected (B, N), caption}, plus the guidance term."""
        chosen, rejected = batch["chosen"].to(self.device), batch["rejected"].to(self.device)  # (B, N)
        B, N = chosen.shape
        text, pad = self.encode_text(batch["caption"])
        text, pad = text.repeat(2, 1, 1), pad.repeat(2, 1)  # chosen rows, then rejected rows
        tokens = torch.cat([chosen, rejected])  # (2B, N)
        masks = torch.cat(pair_masks(B, N, self.config.shared_mask, self.device))  # (2B, N)
        policy = masked_logp(self, tokens, text, pad, masks)  # (2B,)
        with torch.no_grad():
            reference = masked_logp(self.frozen("base"), tokens, text, pad, masks)
        loss, logs = dpo_loss(policy[:B], policy[B:], reference[:B], reference[B:], self.config.beta)
        if self.config.guidance != "none":
            term, guidance_logs = self.guidance_term(batch)
            loss = loss + self.config.reward_coef * term
            logs.update(guidance_logs)
        return loss, logs

    def guidance_term(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The reward-model term on fresh samples of the first captions of the batch. ``released``:
        −log P(yes) of the samples as a new tensor, as the paper's code builds it — a constant, which
        changes the loss's value and not one gradient. ``training``: the on-policy GRPO loss of the
        samples with that reward (``cotlab.preference.grpo``), which does train."""
        c, G = self.config, self.config.guidance_group
        metas = batch["meta"][:c.guidance_prompts]
        captions = [m["prompt"] for m in metas for _ in range(G)]
        seeds = [path_seed(c.data_seed, self.global_step, i) for i in range(len(captions))]
        self.eval()
        rollouts = rollout(self, captions, [m for m in metas for _ in range(G)], seeds)
        self.train()
        rewards = load_reward(c.label)(rollouts.images, captions, rollouts.metas)  # (G·prompts,) in [0, 1]
        logs = {"fresh_reward": rewards.mean()}
        if c.guidance == "released":
            return torch.tensor(-torch.log(rewards.clamp_min(1e-6)).mean().item(), device=self.device), logs
        advantages, kept = group_advantages(rewards, G)
        logp = trajectory_logp(self, rollouts)  # (B, T)
        term, more = grpo_objective(logp, logp.detach(), advantages.to(self.device))
        return term, {**logs, **more}



class PairData(L.LightningDataModule):
    """Batches of preference pairs: ``chosen`` and ``rejected`` tokens (B, N), ``caption`` and ``meta`` (B,)."""

    def __init__(self, config: DPOConfig, seed: int = 0):
        super().__init__()
        self.config, self.seed = config, seed

    def setup(self, stage: str | None = None) -> None:
        c = self.config
        self.data = load_or_build(c.data_spec())
        self.pairs = pairs(self.data, c.label, c.pairs_per_prompt, self.seed)
        if not len(self.pairs):
            raise CotlabError(f"the preference data of {c.base} ({c.prompts} prompts × {c.samples} samples) holds no "
                              "prompt with both a yes and a no image: raise --prompts or --samples")

    def _collate(self, rows: list[int]) -> dict:
        chosen, rejected = self.pairs[rows].T
        return {"chosen": self.data["tokens"][chosen], "rejected": self.data["tokens"][rejected],
                "caption": [self.data["caption"][i] for i in chosen.tolist()],
                "meta": [self.data["meta"][i] for i in chosen.tolist()]}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(range(len(self.pairs)), batch_size=min(self.config.batch_size, len(self.pairs)),
                          shuffle=True, drop_last=True, collate_fn=self._collate,
                          generator=torch.Generator().manual_seed(self.seed))
