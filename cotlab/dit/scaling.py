"""SANA 1.5's scaling: grow a trained model deeper, prune the blocks that matter least, and spend
compute at inference by choosing among N samples.

*SANA 1.5: Efficient Scaling of Training-Time and Inference-Time Compute* (arXiv 2501.18427).

**Depth growth** ("partial preservation init"; the released ``ModelGrowthInitializer.init_constant``):
the deep model keeps the shallow one's embeddings, output layer and its L blocks, and appends new
blocks whose three output projections — self-attention's, cross-attention's and the Mix-FFN's last
1×1 convolution — are zero. Each block adds its branches to the residual stream,

    x ← x + gate₁·W_o·LinearAttention(…) + W_o'·CrossAttention(…) + gate₂·W_point·MixFFN(…),

so with W_o = W_o' = W_point = 0 (and their biases 0) a new block is the exact identity: the grown model
computes what the shallow one did, and training starts from there rather than from noise.

**Block importance** (ShortGPT-style; SANA 1.5 §3 prunes its 4.8B model with it): a block that barely
turns its input matters little,

    BI_i = 1 − E_{x, σ, token}[ cos(X_i, X_{i+1}) ],

X_i the hidden states entering block i and X_{i+1} those leaving it, averaged over tokens, a
calibration set of captioned images and the noise levels σ. Pruning keeps the blocks of highest BI, in
their order, and a short fine-tune heals the rest. The fine-tune can chase flow matching's own target
ε − x_0, or — ours; SANA 1.5 does not say — the full model's velocity on the same input (``Healing``),

    L_heal = E_{x_0, ε, σ, c} ‖v_pruned(x_σ, σ, c) − v_full(x_σ, σ, c)‖².

ε − x_0 is one draw of a target whose mean given x_σ is what the model learns, E[ε − x_0 | x_σ, c];
the full model already holds its estimate of that mean, so the second target carries none of the
draw's noise. (``cotlab bench growth`` measures both; on the shipped ``sana`` neither heals: both
fine-tuned models score measurably below the full one, while the pruned model as it is does not.)

**Inference-time scaling** (SANA 1.5 §4): draw N samples per prompt and let a verifier choose — as
plain **top-1** (score all N, keep the best: N verifier calls) or as SANA 1.5's **single-elimination
tournament** (pair the entrants, the preferred of each pair goes on, until one is left: N − 1
comparisons; SANA 1.5's VILA-Judge compares two images at a time). With a verifier that scores each
image alone, a comparison is "the higher score wins", and the tournament's winner is top-1's — the
same image after N − 1 comparisons instead of N scores; a judge that only compares pairs is where the
tournament is needed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from cotlab import geneval
from cotlab.dit.model import SanaDiT
from cotlab.flow import interpolate
from cotlab.metrics import to_uint8
from cotlab.sampling import samples
from cotlab.verification.metrics import classification, within_prompt_auroc


def with_blocks(model: SanaDiT, blocks: list[int | None]) -> SanaDiT:
    """A new model whose i-th block is a copy of ``model``'s block ``blocks[i]`` (None: a new block, an
    exact identity), with every other weight copied; frozen parts are shared."""
    new = SanaDiT(replace(model.config, layers=len(blocks))).to(model.device)
    source = model.transformer.state_dict()
    new.transformer.load_state_dict({k: v for k, v in source.items() if not k.startswith("transformer_blocks.")},
                                    strict=False)
    for i, j in enumerate(blocks):
        block = new.transformer.transformer_blocks[i]
        if j is None:
            zero_output(block)
        else:
            block.load_state_dict(model.transformer.transformer_blocks[j].state_dict())
    for field in ("autoencoder", "text_encoder"):
        new.set_frozen(field, model.frozen(field))
    return new


@torch.no_grad()
def zero_output(block: torch.nn.Module) -> None:
    """Zero a SANA block's three output projections (and their biases): the block becomes the identity."""
    for layer in (block.attn1.to_out[0], block.attn2.to_out[0], block.ff.conv_point):
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()


def grow(model: SanaDiT, layers: int) -> SanaDiT:
    """``model`` grown to ``layers`` blocks: its own blocks, then identity blocks (module docstring)."""
    L = model.config.layers
    if layers <= L:
        raise ValueError(f"growing needs more than the model's {L} blocks, got {layers}")
    return with_blocks(model, list(range(L)) + [None] * (layers - L))


@torch.no_grad()
def block_importance(model: SanaDiT, images: torch.Tensor, captions: list[str],
                     sigmas: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9), seed: int = 0) -> torch.Tensor:
    """BI_i (L,) of every block (module docstring) over a calibration set of images (B, 3, H, W) in
    [0, 1] with their captions, noised to each σ in ``sigmas`` with seeded noise."""
    blocks = model.transformer.transformer_blocks
    similarity = torch.zeros(len(blocks))
    inputs: dict[int, torch.Tensor] = {}

    def keep_input(i):
        return lambda module, args: inputs.__setitem__(i, args[0])

    def compare(i):
        def hook(module, args, output):  # cos over the width, per token, averaged: (B, N, D) → scalar
            similarity[i] += F.cosine_similarity(inputs[i], output, dim=-1).mean().item() / len(sigmas)
        return hook

    handles = [h for i, b in enumerate(blocks)
               for h in (b.register_forward_pre_hook(keep_input(i)), b.register_forward_hook(compare(i)))]
    try:
        z = model.encode_images(images)  # (B, C, h, w)
        text, mask = model.encode_text(captions)
        generator = torch.Generator().manual_seed(seed)
        for sigma in sigmas:
            noise = torch.randn(z.shape, generator=generator).to(z)
            s = torch.full((len(z),), sigma, device=z.device)
            model(interpolate(z, noise, s), s, text, mask)
    finally:
        for h in handles:
            h.remove()
    return 1 - similarity


class Healing(SanaDiT):
    """A pruned model fine-tuned on the full model's velocity (module docstring: L_heal); the full
    model is a frozen part, neither trained nor saved."""

    @classmethod
    def of(cls, pruned: SanaDiT, full: SanaDiT) -> Healing:
        """``pruned``'s weights in a model that learns from ``full``."""
        healing = cls(pruned.config).to(pruned.device)
        healing.transformer.load_state_dict(pruned.transformer.state_dict())
        for field in ("autoencoder", "text_encoder"):
            healing.set_frozen(field, pruned.frozen(field))
        healing.set_frozen("full", full)
        return healing

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        x, sigma, text, mask, _, _ = self.noised(batch)  # the full model sees the same input
        with torch.no_grad():
            target = self.frozen("full")(x, sigma, text, mask)  # (B, C, h, w)
        return F.mse_loss(self(x, sigma, text, mask), target), {}


def prune(model: SanaDiT, importance: torch.Tensor, keep: int) -> SanaDiT:
    """``model`` with only its ``keep`` blocks of highest importance (L,), in their original order."""
    kept = sorted(importance.topk(keep).indices.tolist())
    return with_blocks(model, kept)


# --- inference-time scaling ------------------------------------------------------------------------
def tournament(scores: torch.Tensor) -> tuple[int, int]:
    """Single elimination over entrants 0 … n−1 with scores (n,): pair them in order, the higher score
    of each pair goes on (a tie: the earlier entrant), an odd one out gets a bye. Returns (winner,
    comparisons), comparisons = n − 1."""
    entrants, comparisons = list(range(len(scores))), 0
    while len(entrants) > 1:
        winners = []
        for a, b in zip(entrants[::2], entrants[1::2]):
            winners.append(a if scores[a] >= scores[b] else b)
            comparisons += 1
        entrants = winners + entrants[len(entrants) - len(entrants) % 2:]  # the bye goes on
    return entrants[0], comparisons


Scorer = Callable[[torch.Tensor, list[str], torch.Tensor], torch.Tensor]  # as in cotlab.verification.search


@torch.no_grad()
def inference_scaling(generator, scorers: dict[str, Scorer], metas: list[dict], N: int = 64,
                      ns: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64), seed: int = 0, **options) -> dict:
    """N samples per prompt (prompt i's seeds as ``cotlab.sampling.samples`` draws them, so the first
    n are those of a run with n), each judged exactly and scored by every verifier; then for every n
    in ``ns`` the N samples cut into N/n groups of n, each group's choice by top-1 and by tournament.

    Returns ``curves``: verifier -> method -> {str(n): GenEval summary of the choices (with intervals),
    ``calls`` per image, and ``gain_over_one``: the paired difference to each group's first sample,
    i.e. to drawing one image}; ``quality``: verifier -> precision/recall/AUROC of its score against
    the exact evaluator over all candidates (with intervals), and ``within_prompt``: its AUROC among
    one prompt's candidates (``within_prompt_auroc``), the ranking best-of-N relies on."""
    correct, scores, tags = [], {name: [] for name in scorers}, []
    for index, meta, result in samples(generator, metas, N, seed, **options):
        correct.append([geneval.judge(x, meta)[0] for x in to_uint8(result.images)])
        for name, scorer in scorers.items():
            scores[name].append(scorer(result.images, [meta["prompt"]] * N, torch.ones(N)).float().cpu())
        tags.append(meta["tag"])
    correct_np = np.array(correct, bool)  # (P, N)

    def rows(picks: list[list[int]]) -> list[dict]:  # picks[i]: the chosen sample of each group of prompt i
        return [{"filename": f"{i:05d}/samples/{g:04d}.png", "tag": tags[i], "correct": bool(correct_np[i, j])}
                for i, chosen in enumerate(picks) for g, j in enumerate(chosen)]

    curves = {}
    for name in scorers:
        s = torch.stack(scores[name])  # (P, N)
        curves[name] = {"top-1": {}, "tournament": {}}
        for n in ns:
            groups = [range(g * n, (g + 1) * n) for g in range(N // n)]
            one = rows([[g.start for g in groups]] * len(tags))  # each group's first sample: no choice
            top = rows([[g.start + int(s[i, g.start:g.stop].argmax()) for g in groups] for i in range(len(tags))])
            played = [[tournament(s[i, g.start:g.stop]) for g in groups] for i in range(len(tags))]
            final = rows([[g.start + w for g, (w, _) in zip(groups, row)] for row in played])
            for method, chosen, calls in (("top-1", top, n), ("tournament", final, played[0][0][1])):
                curves[name][method][str(n)] = {**geneval.summarize(chosen), "calls": calls,
                                           "gain_over_one": geneval.paired_difference(chosen, one)["overall"]}
    quality = {name: {**classification(torch.stack(scores[name]).flatten().numpy(), correct_np.flatten(), intervals=True),
                      "within_prompt": within_prompt_auroc(torch.stack(scores[name]), correct_np)}
               for name in scorers}
    return {"N": N, "ns": list(ns), "prompts": len(tags), "curves": curves, "quality": quality}
