"""Decoding a token transformer: MaskGIT's confidence-based parallel decoding, and raster order.

**MaskGIT decoding** (Chang et al., arXiv 2202.04200, §3.2) fills N tokens in T steps. Start with every
position masked; at step t = 1 … T:

1. predict logits at every position (with classifier-free guidance, ``cfg`` = w),
2. *sample* a token at each masked position from softmax(logits / τ_sample); committed tokens stay,
3. score each sampled token by its confidence log p plus annealed Gumbel noise τ_t · g,
   g ~ Gumbel(0, 1), τ_t falling linearly from ``choice_temperature`` at t = 1 to 0 at t = T (a high
   choice temperature early explores, late it commits the sure tokens),
4. keep the n_t least confident of the newly sampled tokens masked and commit the rest, with
   n_t = max(1, min(n_{t−1} − 1, ⌊γ(t/T) · N⌋)) for t < T (γ the cosine schedule of training; at
   least one token committed and one kept back per step) and n_T = 0: every position is filled.

Steps 2–4 are one ``step`` of diffusers' ``AmusedScheduler`` (the scheduler of aMUSEd, arXiv
2401.01808, an open MUSE), used as it is; ``mask_schedule`` states its n_t. The decoder returns the
final tokens of step T (every token sampled and committed), not a re-masked state. At each step the
*intermediate image* — committed plus freshly sampled tokens, decoded — is what Show-o shows and what
the verifiers of notebook 06 judge.

**Raster decoding** samples k_1, k_2, … k_N one per forward pass, each conditioned on those before.

Both report their cost in transformer forward passes per image (two per step with guidance).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from diffusers import AmusedScheduler

from cotlab.masked_ar.model import MaskedAR


@dataclass
class DecodeResult:
    """What a decoding run made: ``tokens`` (B, N), their ``images`` (B, 3, H, W) in [0, 1], the
    ``forward_passes`` per image, and per step (when asked) ``steps``: a list of dicts with
    ``masked`` (B, N) bool — still masked *after* the step —, ``sampled`` (B, N) — committed plus
    sampled tokens — and ``image`` (B, 3, H, W), the decoded intermediate."""
    tokens: torch.Tensor
    images: torch.Tensor
    forward_passes: int
    steps: list[dict] = field(default_factory=list)


def path_seed(*parts: int) -> int:
    """The seed of one decoding path, from e.g. (run seed, prompt, sample, candidate). Each path draws
    from its own random stream, so its image does not depend on which paths share its batch: the
    first n of best-of-N's candidates are best-of-n's, and stopping a path leaves the others as they were."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: a valid torch seed


def row_seeds(seed: int | Sequence[int], rows: int) -> list[int]:
    """One seed per row: ``seed`` as given if it is a list, else path_seed(seed, row)."""
    seeds = [path_seed(seed, r) for r in range(rows)] if isinstance(seed, int) else list(seed)
    if len(seeds) != rows:
        raise ValueError(f"got {len(seeds)} seeds for {rows} captions")
    return seeds


def mask_schedule(steps: int, N: int) -> list[int]:
    """n_t, the number of positions still masked after step t = 1 … T, as ``AmusedScheduler`` counts
    them: max(1, min(n_{t−1} − 1, ⌊γ(t/T) · N⌋)) before the last step, then 0."""
    counts, previous = [], N
    for t in range(1, steps):
        previous = max(1, min(previous - 1, math.floor(N * math.cos(math.pi / 2 * t / steps))))
        counts.append(previous)
    return counts + [0]


class Paths:
    """B MaskGIT decoding paths advanced one step at a time, each with its own random stream and its
    own place in the T-step schedule — so a verifier can look at every step, stop paths (PARM's
    pruning), or restart one from a partly re-masked state (PARM++'s reflection).

    ``tokens`` (B, N) hold committed tokens and [MASK]; ``sampled`` (B, N) the last step's committed
    plus sampled tokens (the intermediate image's tokens); ``position`` (B,) how many of the T steps
    each path has taken; ``passes`` (B,) the transformer forward passes each has cost."""

    def __init__(self, model: MaskedAR, captions: list[str], steps: int = 8, cfg: float = 3.0,
                 seed: int | Sequence[int] = 0, sample_temperature: float = 1.0, choice_temperature: float = 4.5):
        if model.config.order != "masked":
            raise ValueError("MaskGIT decoding needs a model trained with order='masked'; use raster_decode")
        N, device, B = model.num_tokens, model.device, len(captions)
        if not 1 <= steps <= N:
            raise ValueError(f"steps must be between 1 and the {N} tokens of an image, got {steps}")
        self.model, self.captions, self.steps, self.cfg = model, list(captions), steps, cfg
        self.sample_temperature = sample_temperature
        self.generators = [torch.Generator().manual_seed(s) for s in row_seeds(seed, B)]  # on the CPU: same draws on any device
        self.scheduler = AmusedScheduler(mask_token_id=model.mask_id, masking_schedule="cosine")
        self.scheduler.set_timesteps(steps, temperature=(choice_temperature, 0.0), device=device)
        self.text, self.text_pad = model.prefix(captions, cfg)  # (B or 2B, T, D), (B or 2B, T)
        self.tokens = torch.full((B, N), model.mask_id, dtype=torch.long, device=device)  # (B, N)
        self.sampled = self.tokens.clone()
        self.position = torch.zeros(B, dtype=torch.long)
        self.passes = torch.zeros(B, dtype=torch.long)

    def done(self, rows=None) -> torch.Tensor:
        """(len(rows),) bool: which paths have taken all T steps."""
        return self.position[self._rows(rows)] >= self.steps

    def _rows(self, rows) -> torch.Tensor:
        return torch.arange(len(self.captions)) if rows is None else torch.as_tensor(rows, dtype=torch.long).reshape(-1)

    @torch.no_grad()
    def advance(self, rows=None, shared: bool = False) -> torch.Tensor:
        """Take one step on ``rows`` (default: every path not done); returns their sampled tokens
        (R, N). ``shared=True`` says the rows are in one state (branches of one path): the logits are
        computed once and each row samples from them with its own stream — one path's cost."""
        rows = self._rows(rows) if rows is not None else (~self.done()).nonzero()[:, 0]
        if bool(self.done(rows).any()):
            raise ValueError("a path that has taken all its steps cannot advance")
        model, cfg = self.model, self.cfg
        first = rows[:1] if shared else rows
        prefix_rows = first if cfg == 1.0 else torch.cat([first, first + len(self.captions)])
        prefix = (self.text[prefix_rows.to(self.text.device)], self.text_pad[prefix_rows.to(self.text.device)])
        logits = model.guided_logits(self.tokens[first], prefix, cfg) / self.sample_temperature  # (R or 1, N, K)
        for i, r in enumerate(rows.tolist()):
            t = self.scheduler.timesteps[self.position[r]]
            out = self.scheduler.step(logits[0 if shared else i][None], t, self.tokens[r][None],
                                      generator=self.generators[r])
            self.tokens[r], self.sampled[r] = out.prev_sample[0], out.pred_original_sample[0]
        self.position[rows] += 1
        cost = 1 if cfg == 1.0 else 2
        if shared:
            self.passes[rows[0]] += cost  # one forward pass for all branches, charged once
        else:
            self.passes[rows] += cost
        return self.sampled[rows]

    def restart(self, row: int, tokens: torch.Tensor) -> None:
        """Put path ``row`` into a partial state: ``tokens`` (N,) with [MASK] where it is to be redrawn.
        It resumes the schedule at the first step that leaves fewer masked: as if decoding had
        reached this state itself."""
        m = int((tokens == self.model.mask_id).sum())
        counts = mask_schedule(self.steps, self.model.num_tokens)
        self.tokens[row] = tokens.to(self.tokens.device)
        self.position[row] = next(t for t, n in enumerate(counts) if n < m) if m else self.steps

    def copy_state(self, source: int, rows) -> None:
        """Give ``rows`` the state of path ``source`` (each keeps its own random stream)."""
        rows = self._rows(rows)
        self.tokens[rows] = self.tokens[source].clone()
        self.sampled[rows] = self.sampled[source].clone()
        self.position[rows] = self.position[source].clone()

    @torch.no_grad()
    def images(self, rows=None, sampled: bool = True) -> torch.Tensor:
        """(R, 3, H, W) in [0, 1]: the intermediate images (committed + sampled tokens) of ``rows``,
        or with ``sampled=False`` their current tokens (final images once done)."""
        rows = self._rows(rows)
        return self.model.decode_tokens((self.sampled if sampled else self.tokens)[rows]).cpu()


@torch.no_grad()
def maskgit_decode(model: MaskedAR, captions: list[str], steps: int = 8, cfg: float = 3.0,
                   sample_temperature: float = 1.0, choice_temperature: float = 4.5,
                   seed: int | Sequence[int] = 0, keep_steps: bool = False) -> DecodeResult:
    """Generate one image per caption by MaskGIT decoding in ``steps`` steps (see the module
    docstring); ``seed`` is one seed per caption, or an int that gives row r ``path_seed(seed, r)``."""
    paths = Paths(model, captions, steps, cfg, seed, sample_temperature, choice_temperature)
    record = []
    while not bool(paths.done().all()):
        paths.advance()
        if keep_steps:
            record.append({"masked": (paths.tokens == model.mask_id).cpu(), "sampled": paths.sampled.cpu(),
                           "image": paths.images()})
    return DecodeResult(paths.tokens, paths.images(sampled=False), int(paths.passes[0]), record)


@torch.no_grad()
def raster_decode(model: MaskedAR, captions: list[str], cfg: float = 3.0, temperature: float = 1.0,
                  seed: int | Sequence[int] = 0) -> DecodeResult:
    """Generate one image per caption token by token in raster order (N forward passes); ``seed`` as
    for ``maskgit_decode``."""
    if model.config.order != "raster":
        raise ValueError("raster_decode needs a model trained with order='raster'; use maskgit_decode")
    N, device = model.num_tokens, model.device
    B = len(captions)
    generators = [torch.Generator().manual_seed(s) for s in row_seeds(seed, B)]
    prefix = model.prefix(captions, cfg)
    tokens = torch.full((B, N + 1), model.mask_id, dtype=torch.long, device=device)  # [START] k_1 … k_N
    for i in range(N):
        probs = (model.guided_logits(tokens[:, :N], prefix, cfg)[:, i] / temperature).softmax(-1)  # (B, K)
        tokens[:, i + 1] = torch.cat([torch.multinomial(p.cpu(), 1, generator=g) for p, g in zip(probs, generators)]).to(device)
    tokens = tokens[:, 1:]
    passes = N * (1 if cfg == 1.0 else 2)
    return DecodeResult(tokens, model.decode_tokens(tokens).cpu(), passes)
