"""Reward models: ORM, PRM and PARM (with PARM++'s reflection heads), on the small CLIP of notebook 00.

*Can We Generate Images with CoT? Let's Verify and Reinforce Image Generation Step by Step*
(Guo et al., arXiv 2501.13926). The paper's verifiers are a 7B LLaVA answering "yes"/"no"; the
score is P("yes") of the first answer token. Here one small model answers the same questions,
each a logistic head, p = σ(ℓ):

    yes        does the image show the prompt?       ORM: final images x_T, label judge(x_T)
                                                     PRM: step images x_t, label max_i judge(z_i) (any rollout)
    clear      is this step clear enough to judge?   PARM, label clear_t (``cotlab.verification.data``)
    potential  can this step still end correct?      PARM, soft label P̂(correct | t) from k rollouts
    kind       which clause fails (none, missing object, count, colour, position)   PARM++ (softmax)
    redo       which grid cells to redraw (one logit per cell)                       PARM++

Architecture: the shipped ``clip`` towers, fine-tuned — the vision tower's 16 cell patches and the
text tower's token states — projected to one width and read by a small transformer together with a
[REWARD] token that carries the step's progress t/T (the fraction of decoding done: a step image
is told it is one; a final image has t/T = 1). The heads read [REWARD]; ``redo`` reads the patches.
Unlike the pooled CLIPScore (the zero-shot ORM/PRM), the patches keep *where* things are.

Loss: binary cross-entropy on each head the model's ``task`` trains, over the examples that carry
its label; for PARM the sum of yes (finals), clear and potential (steps), kind and redo (finals).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cotlab.clip import ShapesCLIP
from cotlab.harness import Model, checkpoint_config, load_checkpoint
from cotlab.profiles import ProfileConfig
from cotlab.verification.data import KINDS, DataSpec, load_or_build

TASKS = {"orm": ("yes",), "prm": ("yes",), "parm": ("yes", "clear", "potential", "kind", "redo")}


@dataclass
class RewardConfig(ProfileConfig):
    """A reward model's task, sizes, training and data; the defaults are the ``cpu`` profile."""
    task: str = "orm"  # orm | prm | parm
    backbone: str = "clip"  # the shipped CLIP whose towers are fine-tuned
    width: int = 128
    layers: int = 2  # fusion transformer blocks
    heads: int = 4
    batch_size: int = 128
    lr: float = 5e-4  # new layers; the CLIP towers get lr / 5
    weight_decay: float = 0.05
    warmup_steps: int = 50
    max_steps: int = 1200
    max_minutes: float | None = 8.0
    # the data (cotlab.verification.data.DataSpec)
    generator: str = "maskgit"
    prompts: int = 600
    paths: int = 8
    rollout_prompts: int = 160
    rollout_paths: int = 3
    rollouts: int = 4
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(width=32, layers=1, heads=2, batch_size=16, warmup_steps=2, max_steps=8, max_minutes=1.0,
                      prompts=6, paths=2, rollout_prompts=3, rollout_paths=1, rollouts=2),
        "gpu": dict(width=256, layers=4, heads=8, batch_size=512, warmup_steps=200, max_steps=10_000,
                    max_minutes=60.0, prompts=6000, paths=16, rollout_prompts=2000, rollout_paths=4),
    }

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown reward task '{self.task}': choose one of {', '.join(TASKS)}")

    def data_spec(self) -> DataSpec:
        return DataSpec(generator=self.generator, prompts=self.prompts, paths=self.paths,
                        rollout_prompts=self.rollout_prompts, rollout_paths=self.rollout_paths,
                        rollouts=self.rollouts)


class RewardModel(Model):
    """A reward model (ORM, PRM or PARM) on the CLIP towers: yes / clear / potential / kind / redo heads."""

    Config = RewardConfig
    PROGRESS = ("yes_acc",)

    def __init__(self, config: RewardConfig):
        super().__init__(config)
        if torch.empty(0).is_meta:  # built on the meta device (shapes only): no weights to load
            clip = ShapesCLIP(ShapesCLIP.Config(**checkpoint_config(config.backbone)))
        else:  # fine-tuning starts from the shipped CLIP
            clip = load_checkpoint(config.backbone)
        self.tokenizer, self.clip_config = clip.tokenizer, clip.config
        self.vision, self.text = clip.clip.vision_model.train(), clip.clip.text_model.train()  # fine-tuned, saved here
        D, Dv, Dt = config.width, self.vision.config.hidden_size, self.text.config.hidden_size
        self.from_vision, self.from_text = nn.Linear(Dv, D), nn.Linear(Dt, D)
        self.kind_embedding = nn.Parameter(torch.zeros(3, D))  # [REWARD], patch, text: which stream a token is
        self.progress = nn.Linear(1, D)  # t/T into the [REWARD] token
        block = nn.TransformerEncoderLayer(D, config.heads, 4 * D, dropout=0.0, batch_first=True, norm_first=True)
        self.fusion = nn.TransformerEncoder(block, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D)
        self.score_heads = nn.Linear(D, 3)  # yes, clear, potential
        self.kind_head = nn.Linear(D, len(KINDS))
        self.redo_head = nn.Linear(D, 1)

    # --- the model ------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, captions: list[str], progress: torch.Tensor | float = 1.0
                ) -> dict[str, torch.Tensor]:
        """Logits of every head for images (B, 3, H, W) in [0, 1] (or uint8), one caption each, at
        decoding progress t/T (B,) or a float: yes, clear, potential (B,), kind (B, 5), redo (B, cells)."""
        images = images.to(self.device)
        if images.dtype == torch.uint8:
            images = images.float() / 255
        B = len(images)
        patches = self.vision(pixel_values=images - 0.5).last_hidden_state[:, 1:]  # (B, cells, Dv), as CLIP sees them
        unique = list(dict.fromkeys(captions))  # each distinct caption through the text tower once
        tokens = self.tokenizer(unique, padding="max_length", truncation=True,
                                max_length=self.clip_config.max_length, return_tensors="pt")
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        which = torch.tensor([unique.index(c) for c in captions], device=self.device)  # (B,)
        words = self.text(input_ids=ids, attention_mask=mask).last_hidden_state[which]  # (B, L, Dt)
        mask = mask[which]
        progress = torch.as_tensor(progress, dtype=torch.float, device=self.device).expand(B)
        reward = self.progress(progress[:, None]) + self.kind_embedding[0]  # (B, D)
        x = torch.cat([reward[:, None], self.from_vision(patches) + self.kind_embedding[1],
                       self.from_text(words) + self.kind_embedding[2]], dim=1)  # (B, 1 + cells + L, D)
        pad = torch.cat([torch.zeros(B, 1 + patches.shape[1], dtype=torch.bool, device=self.device), mask == 0], 1)
        h = self.norm(self.fusion(x, src_key_padding_mask=pad))  # (B, 1 + cells + L, D)
        yes, clear, potential = self.score_heads(h[:, 0]).unbind(-1)  # (B,) each
        return {"yes": yes, "clear": clear, "potential": potential, "kind": self.kind_head(h[:, 0]),
                "redo": self.redo_head(h[:, 1:1 + patches.shape[1]])[..., 0]}

    @torch.no_grad()
    def judge(self, images: torch.Tensor, captions: list[str], progress: torch.Tensor | float = 1.0,
              batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Probabilities of every head (on the CPU), in batches: yes, clear, potential (B,) in [0, 1],
        kind (B, 5) a distribution, redo (B, cells) in [0, 1]."""
        progress = torch.as_tensor(progress, dtype=torch.float).expand(len(images))
        outs = [self(images[i:i + batch_size], captions[i:i + batch_size], progress[i:i + batch_size])
                for i in range(0, len(images), batch_size)]
        out = {k: torch.cat([o[k] for o in outs]).float().cpu() for k in outs[0]}
        return {k: v.softmax(-1) if k == "kind" else v.sigmoid() for k, v in out.items()}

    # --- training ----------------------------------------------------------------------------
    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Σ over this task's heads of the head's cross-entropy on the examples carrying its label."""
        out = self(batch["image"], batch["caption"], batch["progress"])
        heads, logs, total = TASKS[self.config.task], {}, 0.0
        for name in heads:
            has = batch[f"has_{name}"]  # (B,) bool: this example carries the label
            if not bool(has.any()):
                continue
            target = batch[name][has]
            if name == "kind":
                value = F.cross_entropy(out[name][has], target.long())
            else:  # logistic heads; potential's target is soft
                value = F.binary_cross_entropy_with_logits(out[name][has], target.float())
                if name != "redo":
                    logs[f"{name}_acc"] = ((out[name][has] > 0) == (target > 0.5)).float().mean()
            logs[f"{name}_loss"] = value
            total = total + value
        return total, logs

    def parameter_groups(self) -> list[dict]:
        """The CLIP towers at lr/5 (fine-tuned), the new layers at lr."""
        towers = [p for n, p in self.named_parameters() if n.startswith(("vision.", "text."))]
        new = [p for n, p in self.named_parameters() if not n.startswith(("vision.", "text."))]
        return [{"params": towers, "lr": self.config.lr / 5}, {"params": new}]


# --- data ------------------------------------------------------------------------------------------
class RewardExamples(Dataset):
    """Final images and step images of the verifier data as one list of examples, each with every
    label slot (``has_<head>`` False where it carries none). Which examples a task sees: ORM the
    finals; PRM the step images (the last step is the final); PARM both."""

    def __init__(self, data: dict, task: str, rows=None):
        finals, steps = data["finals"], data["steps"]
        cells = finals["redo"].shape[1]
        self.items = []
        if task in ("orm", "parm"):
            for i in range(len(finals["caption"])):
                self.items.append(dict(image=finals["image"][i], caption=finals["caption"][i], progress=1.0,
                                       yes=float(finals["correct"][i]), clear=0.0, potential=0.0,
                                       kind=int(finals["kind"][i]), redo=finals["redo"][i].float(),
                                       has_yes=True, has_clear=False, has_potential=False,
                                       has_kind=True, has_redo=not bool(finals["correct"][i])))
        if task in ("prm", "parm"):
            for i in range(len(steps["caption"])):
                self.items.append(dict(image=steps["image"][i], caption=steps["caption"][i],
                                       progress=float(steps["progress"][i]), yes=float(steps["prm"][i]),
                                       clear=float(steps["clear"][i]), potential=float(steps["potential"][i]),
                                       kind=0, redo=torch.zeros(cells),
                                       has_yes=task == "prm", has_clear=True, has_potential=True,
                                       has_kind=False, has_redo=False))
        if rows is not None:
            self.items = [self.items[i] for i in rows]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class RewardData(L.LightningDataModule):
    """The verifier data of a ``RewardConfig`` (built once, cached) — or ``data`` given as built by
    ``verification.data.build`` — shuffled, batch after batch."""

    def __init__(self, config: RewardConfig, seed: int = 0, data: dict | None = None):
        super().__init__()
        self.config, self.seed, self.data = config, seed, data

    def setup(self, stage: str | None = None) -> None:
        data = self.data if self.data is not None else load_or_build(self.config.data_spec())
        self.examples = RewardExamples(data, self.config.task)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.examples, batch_size=self.config.batch_size, shuffle=True, generator=g,
                          drop_last=len(self.examples) > self.config.batch_size)
