"""A small CLIP for the Shapes world: the shared text encoder, and a zero-shot judge.

*Learning Transferable Visual Models From Natural Language Supervision* (Radford et al., arXiv 2103.00020).
An image tower f and a text tower g map a batch of B (image, caption) pairs to unit vectors

    u_i = f(x_i) / |f(x_i)|,   v_j = g(c_j) / |g(c_j)|,   S_ij = e^t · u_i·v_j,

with a learned temperature t (``logit_scale``, kept below ln 100 as in CLIP), and train both with the
symmetric InfoNCE loss

    L = ½ [ CE(S, P) + CE(Sᵀ, P) ],   CE(S, P) = -1/B Σ_i Σ_j P_ij log softmax_j(S_i·).

In CLIP's web data captions are unique and P = I. The Shapes world has a few hundred distinct prompts,
so a batch repeats captions, and the pairs (i, j) with the same caption are all positives:
P_ij = [c_i = c_j] / #{k : c_k = c_i}. No hard negatives are added. Trained so, the ``cpu`` model
tells shapes, counts and colours apart, and even which colour goes with which shape, but not
*where* things are: a caption with the opposite relation scores as well as the true one (position
accuracy ≈ 0.5) — the weakness of plain CLIP that the later notebooks measure and build on.

Both towers are transformers' ``CLIPModel`` at toy size: a ViT whose 8-px patches are the 4×4 grid
cells of a 32×32 image, and a causal text transformer pooled at the ``[EOS]`` token. Its text
encoder, per-token hidden states and mask, is what every later generator conditions on
(``encode_text``). ``score`` is CLIPScore (Hessel et al., arXiv 2104.08718), 100 · max(cos(u, v), 0):
the zero-shot judge, later the zero-shot ORM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

from cotlab import geneval
from cotlab.bench import Bench
from cotlab.harness import Model, Recipe, load_checkpoint
from cotlab.metrics import to_tensor
from cotlab.stats import bootstrap_values, flatten_intervals, proportion_interval, quantile_interval, with_interval
from cotlab.profiles import ProfileConfig
from cotlab.shapes import TAGS, World, all_prompts, counterfactual
from cotlab.options import count

# --- tokenizer ---------------------------------------------------------------------------------
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")  # ids 0..3; [EOS] must not be 2, see below


def vocabulary() -> list[str]:
    """The special tokens, then every word of every prompt of the world's grammar, sorted."""
    words = sorted({w for tag in TAGS for meta in all_prompts(tag) for w in meta["prompt"].split()})
    return [*SPECIAL_TOKENS, *words]


def build_tokenizer(max_length: int = 16) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the world's words: nothing to train, no files.

    Text is lower-cased and split at whitespace (and punctuation); a word outside the grammar becomes
    ``[UNK]``, so "a photo of a dog" reads as "a photo of a [UNK]" — the model has never seen it and
    its embedding stays untrained. Each caption becomes ``[BOS] w_1 … w_n [EOS]``, cut at ``max_length``
    (keeping ``[EOS]``) and padded with ``[PAD]`` when called with ``padding="max_length"``.
    """
    vocab = {word: i for i, word in enumerate(vocabulary())}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=vocab["[PAD]"], pad_token="[PAD]", length=max_length)
    # transformers' wrapper sets padding and truncation per call (see ShapesCLIP.tokenize)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=max_length,
                                   pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]")


# --- model -------------------------------------------------------------------------------------
@dataclass
class ShapesCLIPConfig(ProfileConfig):
    """Sizes and training of the Shapes CLIP; the defaults are the ``cpu`` profile."""
    width: int = 128  # D: both towers and the shared embedding
    layers: int = 4  # transformer blocks per tower
    heads: int = 4
    image_size: int = 32
    patch_size: int = 8  # one patch per grid cell: 16 patches, twice as fast as 4-px patches
    max_length: int = 16  # N: text tokens; the longest prompt has 10 words
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 60
    max_steps: int = 1500  # ≈ 0.19 s a step on two cores: about 5 minutes
    max_minutes: float | None = 8.0  # a cap on wall time; max_steps should end first
    eval_per_tag: int = 200  # scenes per tag for caption_accuracy
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(width=32, layers=1, heads=2, batch_size=32, warmup_steps=2, max_steps=8,
                      max_minutes=1.0, eval_per_tag=16),
        "gpu": dict(width=256, layers=6, heads=8, batch_size=512, lr=5e-4, warmup_steps=500,
                    max_steps=20_000, max_minutes=60.0, eval_per_tag=1000),
    }


def clip_config(config: ShapesCLIPConfig, tokenizer: PreTrainedTokenizerFast) -> CLIPConfig:
    """transformers' ``CLIPConfig`` for our sizes and vocabulary.

    The text tower pools the hidden state at the first ``eos_token_id``; transformers treats
    ``eos_token_id == 2`` as a legacy checkpoint and pools at the largest token id instead, which is
    why ``[EOS]`` has id 3 here.
    """
    tower = dict(hidden_size=config.width, intermediate_size=4 * config.width,
                 num_hidden_layers=config.layers, num_attention_heads=config.heads, hidden_act="gelu")
    text = dict(tower, vocab_size=len(tokenizer), max_position_embeddings=config.max_length,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)
    vision = dict(tower, image_size=config.image_size, patch_size=config.patch_size)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=config.width)


class ShapesCLIP(Model):
    """A small CLIP trained from scratch on Shapes captions (symmetric InfoNCE)."""

    Config = ShapesCLIPConfig
    PROGRESS = ("acc",)
    BETAS = (0.9, 0.98)  # CLIP's β₂; AdamW with a linear warm-up, then a cosine decay to zero

    def __init__(self, config: ShapesCLIPConfig):
        super().__init__(config)
        self.tokenizer = build_tokenizer(config.max_length)
        self.clip = CLIPModel(clip_config(config, self.tokenizer))

    # --- encoders ----------------------------------------------------------------------------
    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask``, both (B, N) on the model's device."""
        tokens = self.tokenizer(list(captions), padding="max_length", truncation=True,
                                return_tensors="pt")
        return {k: tokens[k].to(self.device) for k in ("input_ids", "attention_mask")}

    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The shared text encoder: (pooled (B, D) unit vectors, hidden (B, N, D), mask (B, N)).

        ``hidden`` are the per-token states after the final layer norm (causal: token n has read
        tokens ≤ n); ``mask`` is 1 on real tokens ([BOS] … [EOS]) and 0 on padding.
        """
        tokens = self.tokenize(captions)
        out = self.clip.get_text_features(**tokens)
        v = F.normalize(out.pooler_output, dim=-1)  # (B, D)
        return v, out.last_hidden_state, tokens["attention_mask"]  # (B, D), (B, N, D), (B, N)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings (B, D) of float images (B, 3, H, W) in [0, 1]."""
        size = self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"expected images of shape (B, 3, {size}, {size}) in [0, 1], got "
                             f"{tuple(images.shape)}: render with World(image_size={size})")
        # centred at 0.5; shifting the background itself to 0 instead was tried: training then
        # starts faster but never learns colour (colors stayed at chance after 800 steps)
        pixel_values = images.to(self.device) - 0.5
        u = self.clip.get_image_features(pixel_values=pixel_values).pooler_output  # (B, D)
        return F.normalize(u, dim=-1)

    @torch.no_grad()
    def score(self, images: torch.Tensor, captions: list[str] | str) -> torch.Tensor:
        """CLIPScore of each (image, caption) pair: 100 · max(cos(u, v), 0), shape (B,).

        One caption string is scored against every image.
        """
        if isinstance(captions, str):
            captions = [captions] * len(images)
        if len(captions) != len(images):
            raise ValueError(f"got {len(images)} images but {len(captions)} captions: pass one "
                             "caption per image, or a single string for all")
        u, (v, _, _) = self.encode_image(images), self.encode_text(captions)
        return 100 * (u * v).sum(-1).clamp(min=0)  # (B,)

    # --- training ----------------------------------------------------------------------------
    def contrastive_loss(self, images: torch.Tensor, captions: list[str]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetric InfoNCE L = ½ [CE(S, P) + CE(Sᵀ, P)], and in-batch retrieval accuracy.

        Accuracy is the share of images whose best caption in the batch is their own (or the same
        words). Under DDP each rank contrasts its own batch.
        """
        u = self.encode_image(images)  # (B, D)
        v, _, _ = self.encode_text(captions)  # (B, D)
        t = self.clip.logit_scale.clamp(max=math.log(100))
        logits = t.exp() * u @ v.T  # (B, B): S_ij, image i against caption j
        ids = {c: k for k, c in enumerate(dict.fromkeys(captions))}
        label = torch.tensor([ids[c] for c in captions], device=logits.device)  # (B,)
        same = (label[:, None] == label[None, :]).float()  # (B, B): [c_i = c_j]
        P = same / same.sum(1, keepdim=True)  # symmetric, rows sum to 1
        loss = (F.cross_entropy(logits, P) + F.cross_entropy(logits.T, P)) / 2
        accuracy = (label[logits.argmax(1)] == label).float().mean()
        return loss, accuracy

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log_step("val", batch)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """``contrastive_loss`` of the batch's images and captions; logs accuracy and the temperature e^t."""
        loss, accuracy = self.contrastive_loss(batch["image"], batch["caption"])
        return loss, {"acc": accuracy, "temperature": self.clip.logit_scale.exp()}

    def parameter_groups(self) -> list[dict]:
        """Weight decay on matrices only (not on biases, norms or the temperature)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": self.config.weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


# --- evaluation --------------------------------------------------------------------------------
def contrast_pair(world: World, rng: np.random.Generator, tag: str):
    """A scene, its true prompt and a minimally changed prompt that is false of it (GenEval's rules).

    The counterfactual is redrawn until it is false (e.g. "a photo of a square" when a distractor
    square is present is true, not a counterfactual); a scene that admits none is replaced.
    """
    while True:
        scene, meta = world.sample(rng, tag)
        for _ in range(10):
            wrong = counterfactual(meta, rng)
            if not geneval.truth(scene, wrong, world)[0]:
                return scene, meta, wrong


def caption_accuracy(model: ShapesCLIP, n_per_tag: int = 200, seed: int = 1234,
                     world: World = World()) -> dict:
    """Per tag, how often ``model`` scores a scene's true caption above a counterfactual one.

    Pairs are ranked by cosine similarity (CLIPScore's order, without its clipping at zero, which
    would tie an untrained model's negative scores); a tie counts ½, so chance is 0.5.
    Returns ``{tag: accuracy}`` for the six tags and their ``"mean"``, and under ``"interval"`` their
    95 % intervals: Wilson's for a tag (a share of pairs), a bootstrap for the mean (pairs resampled
    within each tag).
    """
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    wins = {}
    with torch.no_grad():
        for tag in TAGS:
            scenes, right, wrong = zip(*(contrast_pair(world, rng, tag) for _ in range(n_per_tag)))
            u = model.encode_image(to_tensor(np.stack([world.render(s) for s in scenes])))  # (B, D)
            cos_right = (u * model.encode_text([m["prompt"] for m in right])[0]).sum(-1)  # (B,)
            cos_wrong = (u * model.encode_text([m["prompt"] for m in wrong])[0]).sum(-1)  # (B,)
            wins[tag] = ((cos_right > cos_wrong).float() + 0.5 * (cos_right == cos_wrong).float()).numpy()
    model.train(was_training)
    resampled = {tag: bootstrap_values(np.mean, w) for tag, w in wins.items()}  # (resamples,) each
    result = {tag: float(w.mean()) for tag, w in wins.items()}
    result["mean"] = float(np.mean([result[tag] for tag in TAGS]))
    result["interval"] = {**{tag: proportion_interval(w.sum(), len(w)) for tag, w in wins.items()},
                          "mean": quantile_interval(np.mean(list(resampled.values()), 0))}
    return result


def _card_metrics(model: ShapesCLIP, profile: str) -> dict:
    """The model card's numbers: ``caption_accuracy`` on the config's pairs, intervals as ``TAG_interval``."""
    return flatten_intervals(caption_accuracy(model, n_per_tag=model.config.eval_per_tag))


RECIPE = Recipe.of("clip", ShapesCLIP, "a small CLIP on Shapes captions: the shared text encoder and the "
                   "zero-shot judge", _card_metrics)


# --- cotlab bench clip ---------------------------------------------------------------------------
def bench_clip(n_per_tag: int = 1000, seed: int = 0) -> dict:
    """``caption_accuracy`` of the shipped CLIP on ``n_per_tag`` minimally different caption pairs per task."""
    return {"n_per_tag": n_per_tag, "seed": seed, **caption_accuracy(load_checkpoint("clip"), n_per_tag, seed)}


def format_clip(result: dict) -> str:
    keys = [*TAGS, "mean"]
    return "\n".join(["| " + " | ".join(keys) + " |", "|---" * len(keys) + "|",
                      "| " + " | ".join(with_interval(result[k], result["interval"][k]) for k in keys) + " |",
                      f"\nHow often the shipped CLIP scores a scene's true caption above a minimally changed false "
                      f"one (chance 0.5): {result['n_per_tag']} pairs per task, seed {result['seed']}; 95 % intervals: "
                      "Wilson's per task, a bootstrap over pairs for the mean."])


def _bench_arguments(parser) -> None:
    parser.add_argument("--n", type=count, default=1000, help="caption pairs per task (default: 1000)")


BENCH = Bench(_bench_arguments, lambda args: bench_clip(args.n, args.seed), format_clip,
              "The shipped CLIP's caption accuracy: per task, how often it scores a scene's true caption above "
              "a minimally changed false one (another shape, count, colour, the opposite relation, swapped "
              "colours); chance 0.5.")
