"""What every alignment method of notebook 07 shares: a policy that starts as a copy of a shipped
generator (``base``), the same generator kept frozen as the reference π_ref, and the rewards.

An aligned model *is* a ``MaskedAR`` (so it decodes, is judged and is searched over like ``maskgit``)
whose config also names its ``base``: the recipe copies the base's weights into it before training,
and ``frozen("base")`` is the reference — loaded from the checkpoint, never trained, never saved with it.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

import lightning as L

from cotlab.harness import checkpoint_config, load_checkpoint
from cotlab.masked_ar.model import MaskedARConfig
from cotlab.shapes import sample_prompt
from cotlab.verification.search import oracle_scorer, reward_scorer

REWARDS = ("orm", "parm", "oracle")
SIZES = ("tokenizer", "text_encoder", "order", "width", "layers", "heads")  # what a policy copies from its base


@dataclass
class PolicyConfig(MaskedARConfig):
    """A ``MaskedARConfig`` whose sizes come from ``base`` (``for_base``) and whose profiles change
    only the alignment's own fields."""
    base: str = "maskgit"  # the generator the policy starts from, and the frozen reference
    PROFILES: ClassVar[dict[str, dict]] = {}

    @classmethod
    def for_base(cls, profile: str, **overrides) -> PolicyConfig:
        """The config of ``profile`` with the base's sizes (``overrides`` may name another base)."""
        base = overrides.get("base", cls.base)
        sizes = {k: v for k, v in checkpoint_config(base).items() if k in SIZES}
        return cls.for_profile(profile, **sizes, **overrides)


def start_from_base(policy: L.LightningModule) -> L.LightningModule:
    """Copy the base generator's weights into ``policy`` (every tensor must match)."""
    policy.load_state_dict(load_checkpoint(policy.config.base).state_dict())
    return policy


Reward = Callable[[torch.Tensor, list[str], list[dict]], torch.Tensor]  # (images, captions, metas) -> (B,)


@functools.cache
def load_reward(name: str) -> Reward:
    """A reward in [0, 1] for final images: the fine-tuned ORM's or PARM's P(yes), or the exact
    evaluator's verdict (``oracle``); each loaded once."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward '{name}': choose one of {', '.join(REWARDS)}")
    if name == "oracle":
        return lambda images, captions, metas: oracle_scorer({m["prompt"]: m for m in metas})(images, captions, None)
    with torch.random.fork_rng():  # building the model draws initial weights: leave training's random stream alone
        judge = load_checkpoint(name)
    return lambda images, captions, metas: reward_scorer(judge)(images, captions, 1.0)


class PromptStream(IterableDataset):
    """Endless batches of ``size`` training prompts (the caption grammar; never a held-out binding):
    ``{"caption": [...], "meta": [...]}``, reproducible from ``seed``. Of each W batches drawn, rank r
    of W distributed ranks takes the r-th, so no two ranks see the same prompts."""

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size

    def __iter__(self) -> Iterator[dict]:
        rng = np.random.default_rng(self.seed)
        while True:
            for r in range(self.world_size):
                metas = [sample_prompt(rng) for _ in range(self.size)]
                if r == self.rank:
                    yield {"caption": [m["prompt"] for m in metas], "meta": metas}


class PromptData(L.LightningDataModule):
    """Training prompts for an online method (GRPO): ``PromptStream`` batches."""

    def __init__(self, size: int, seed: int = 0):
        super().__init__()
        self.size, self.seed = size, seed

    def train_dataloader(self) -> DataLoader:
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        return DataLoader(PromptStream(self.size, self.seed, rank, world_size), batch_size=None,
                          collate_fn=lambda batch: batch)
