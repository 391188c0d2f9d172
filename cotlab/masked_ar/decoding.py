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

Both are ``cotlab.sampling.Paths`` — the interface every search works through — made by
``MaskedAR.paths``: ``MaskGITPaths`` (T steps, and ``redraw`` for PARM++'s reflection) and
``RasterPaths`` (one step per token). Both count their cost in transformer forward passes (two per
step with guidance).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import AmusedScheduler

from cotlab.sampling import Paths


def mask_schedule(steps: int, N: int) -> list[int]:
    """n_t, the number of positions still masked after step t = 1 … T, as ``AmusedScheduler`` counts
    them: max(1, min(n_{t−1} − 1, ⌊γ(t/T) · N⌋)) before the last step, then 0 — with γ = cos(π/2 · t/T)
    in float32 as the scheduler computes it (cos(π/3) is 0.49999997 there, so ⌊N/2⌋ − 1 at t/T = ⅔)."""
    counts, previous = [], N
    for t in range(1, steps):
        gamma = torch.cos(torch.tensor(t, dtype=torch.float32) / steps * math.pi / 2)
        previous = max(1, min(previous - 1, int((N * gamma).floor())))
        counts.append(previous)
    return counts + [0]


def cells_to_tokens(cells: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Token positions (N,) bool under the grid cells (cells,) bool: a token grid of side s over a
    cell grid of side g gives each cell (s/g)² tokens."""
    g, s = int(round(len(cells) ** 0.5)), int(round(num_tokens ** 0.5))
    grid = cells.reshape(g, g).float()
    return F.interpolate(grid[None, None], size=(s, s), mode="nearest")[0, 0].bool().reshape(-1)


class MaskGITPaths(Paths):
    """B MaskGIT decoding paths (module docstring), each with its own random stream and its own place
    in the T-step schedule — so a verifier can look at every step, stop paths (PARM's pruning), or
    restart one from a partly re-masked state (PARM++'s reflection).

    ``tokens`` (B, N) hold committed tokens and [MASK]; ``sampled`` (B, N) the last step's committed
    plus sampled tokens (the intermediate image's tokens). A path's state is its ``tokens``. ``model``
    is a masked ``MaskedAR``, which makes these paths (``MaskedAR.paths``)."""

    def __init__(self, model, captions: list[str], seeds: int | Sequence[int] = 0, steps: int = 8,
                 cfg: float = 3.0, sample_temperature: float = 1.0, choice_temperature: float = 4.5):
        if model.config.order != "masked":
            raise ValueError("MaskGIT decoding needs a model trained with order='masked'; use RasterPaths")
        N, device, B = model.num_tokens, model.device, len(captions)
        if not 1 <= steps <= N:
            raise ValueError(f"steps must be between 1 and the {N} tokens of an image, got {steps}")
        super().__init__(captions, steps, seeds, cost=1 if cfg == 1.0 else 2)
        self.model, self.cfg, self.sample_temperature = model, cfg, sample_temperature
        self.scheduler = AmusedScheduler(mask_token_id=model.mask_id, masking_schedule="cosine")
        self.scheduler.set_timesteps(steps, temperature=(choice_temperature, 0.0), device=device)
        self.text, self.text_pad = model.prefix(captions, cfg)  # (B or 2B, T, D), (B or 2B, T)
        self.tokens = torch.full((B, N), model.mask_id, dtype=torch.long, device=device)  # (B, N)
        self.sampled = self.tokens.clone()

    @torch.no_grad()
    def step(self, rows: torch.Tensor, shared: bool) -> None:
        """Steps 1–4 of the module docstring on ``rows``."""
        first = rows[:1] if shared else rows
        prefix_rows = first if self.cfg == 1.0 else torch.cat([first, first + len(self.captions)])
        prefix_rows = prefix_rows.to(self.text.device)
        logits = self.model.guided_logits(self.tokens[first], (self.text[prefix_rows], self.text_pad[prefix_rows]),
                                          self.cfg) / self.sample_temperature  # (R or 1, N, K)
        for i, r in enumerate(rows.tolist()):
            t = self.scheduler.timesteps[self.position[r]]
            out = self.scheduler.step(logits[0 if shared else i][None], t, self.tokens[r][None],
                                      generator=self.generators[r])
            self.tokens[r], self.sampled[r] = out.prev_sample[0], out.pred_original_sample[0]

    def state(self, row: int) -> torch.Tensor:
        return self.tokens[row].clone()

    def restore(self, row: int, state: torch.Tensor) -> None:
        """Put path ``row`` into a partial state: tokens (N,) with [MASK] where it is to be drawn. It
        resumes the schedule at the first step that leaves fewer masked."""
        m = int((state == self.model.mask_id).sum())
        counts = mask_schedule(self.steps, self.model.num_tokens)
        self.tokens[row] = state.to(self.tokens.device)
        self.position[row] = next(t for t, n in enumerate(counts) if n < m) if m else self.steps

    def copy_state(self, source: int, rows) -> None:
        rows = self.rows(rows)
        self.tokens[rows] = self.tokens[source].clone()
        self.sampled[rows] = self.sampled[source].clone()
        self.position[rows] = self.position[source].clone()

    def redraw(self, row: int, cells: torch.Tensor) -> None:
        """Re-mask the tokens under ``cells`` and resume decoding there (MaskGIT inpainting)."""
        tokens = self.tokens[row].clone()
        tokens[cells_to_tokens(cells, self.model.num_tokens).to(tokens.device)] = self.model.mask_id
        self.restore(row, tokens)

    @torch.no_grad()
    def images(self, rows=None, final: bool = False) -> torch.Tensor:
        rows = self.rows(rows)
        return self.model.decode_tokens((self.tokens if final else self.sampled)[rows]).cpu()

    def record(self) -> dict:
        """Per step: ``masked`` (B, N) bool — still masked *after* the step —, ``sampled`` (B, N) and
        the intermediate ``image`` (B, 3, H, W), each a copy (decoding updates its tensors in place,
        and ``.cpu()`` of a CPU tensor is that same tensor)."""
        return {"masked": (self.tokens == self.model.mask_id).cpu(), "sampled": self.sampled.to("cpu", copy=True),
                "image": self.images()}


class RasterPaths(Paths):
    """B raster-order decodings: k_1, k_2, … k_N, one token per step (T = N), each sampled from
    softmax(logits / τ) conditioned on those before. The intermediate image shows the tokens written
    so far and, at every later position, the last pass's most likely token there (a guess whose context
    is not yet written). A path's state is its input row [START] k_1 … and its position."""

    def __init__(self, model, captions: list[str], seeds: int | Sequence[int] = 0, cfg: float = 3.0,
                 sample_temperature: float = 1.0):
        if model.config.order != "raster":
            raise ValueError("raster decoding needs a model trained with order='raster'; use MaskGITPaths")
        N, B = model.num_tokens, len(captions)
        super().__init__(captions, N, seeds, cost=1 if cfg == 1.0 else 2)
        self.model, self.cfg, self.sample_temperature = model, cfg, sample_temperature
        self.text, self.text_pad = model.prefix(captions, cfg)
        self.inputs = torch.full((B, N + 1), model.mask_id, dtype=torch.long, device=model.device)  # [START] k_1 … k_N
        self.guess = self.inputs[:, 1:].clone()  # (B, N): the last pass's most likely token at each position

    @property
    def tokens(self) -> torch.Tensor:
        """(B, N): the tokens written so far ([START]'s id where none is yet)."""
        return self.inputs[:, 1:]

    @property
    def sampled(self) -> torch.Tensor:
        """(B, N): the intermediate image's tokens — those written, then the last pass's guesses."""
        written = torch.arange(self.model.num_tokens) < self.position[:, None]  # (B, N)
        return torch.where(written.to(self.inputs.device), self.tokens, self.guess)

    @torch.no_grad()
    def step(self, rows: torch.Tensor, shared: bool) -> None:
        first = rows[:1] if shared else rows
        prefix_rows = first if self.cfg == 1.0 else torch.cat([first, first + len(self.captions)])
        prefix_rows = prefix_rows.to(self.text.device)
        N, device = self.model.num_tokens, self.inputs.device
        logits = self.model.guided_logits(self.inputs[first.to(device), :N],
                                          (self.text[prefix_rows], self.text_pad[prefix_rows]), self.cfg)  # (R or 1, N, K)
        logits = logits.expand(len(rows), -1, -1)  # (R, N, K): branches of one state share it
        at = self.position[rows].to(device)  # (R,) the position each row writes now
        probs = (logits[torch.arange(len(rows), device=device), at] / self.sample_temperature).softmax(-1).cpu()  # (R, K)
        drawn = torch.cat([torch.multinomial(p, 1, generator=self.generators[r]) for p, r in zip(probs, rows.tolist())])
        self.inputs[rows.to(device), at + 1] = drawn.to(device)
        self.guess[rows.to(device)] = logits.argmax(-1)

    def state(self, row: int) -> tuple[torch.Tensor, int]:
        return self.inputs[row].clone(), int(self.position[row])

    def restore(self, row: int, state: tuple[torch.Tensor, int]) -> None:
        self.inputs[row], self.position[row] = state[0].to(self.inputs.device), state[1]

    @torch.no_grad()
    def images(self, rows=None, final: bool = False) -> torch.Tensor:
        rows = self.rows(rows)
        return self.model.decode_tokens((self.tokens if final else self.sampled)[rows.to(self.inputs.device)]).cpu()
