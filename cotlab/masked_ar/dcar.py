"""DC-AR's residual head: the hybrid tokenizer's continuous residual, drawn by flow matching.

*DC-AR: Efficient Masked Autoregressive Image Generation with Deep Compression Hybrid Tokenizer*
(arXiv 2507.04947), after HART (arXiv 2410.10812) and MAR's per-token diffusion head (arXiv 2406.11838).
A masked transformer (``maskgit_hybrid``) generates the 16 discrete tokens k of the hybrid tokenizer;
then a light head adds what the tokens leave out, the residual Z_r = Z − Z_q, one vector per position i,
conditioned on the transformer's final hidden state h_i there. In ``cotlab.flow``'s convention
(σ = 1 noise, σ = 0 data):

    x_0 = Z_r,i / s   (data; s: the residual's standard deviation, so x_0 has unit scale)
    ε ~ N(0, I),  σ ~ U(0, 1),  x_σ = (1 − σ) x_0 + σ ε                    (flow matching)
    L = E ‖v_θ(x_σ, σ, h_i) − (ε − x_0)‖²

Sampling integrates dx/dσ = v_θ(x, σ, h_i) from noise at σ = 1 down to σ = 0 with Euler steps, and
the image is the hybrid decoder's D(Z_q + s x_0). The head is an MLP applied to every position
independently, so it costs a small fraction of a transformer step.

Training needs the transformer frozen: its hidden states for the training images' own tokens (all
given, none masked) condition the head.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from cotlab import flow, geneval, sampling
from cotlab.harness import Model, checkpoint_config, load_checkpoint
from cotlab.metrics import pooled_psnr, psnr_of_errors, shapes_fd_with_interval, to_tensor, to_uint8
from cotlab.stats import bootstrap_interval
from cotlab.profiles import ProfileConfig
from cotlab.shapes import World

TIME_WIDTH = 64  # sinusoidal features of σ (flow.timestep_embedding)


@dataclass
class ResidualHeadConfig(ProfileConfig):
    """Sizes and training of the residual head; the defaults are the ``cpu`` profile."""
    generator: str = "maskgit_hybrid"  # the MaskedAR over hybrid_f8 tokens whose hidden states condition
    width: int = 256
    depth: int = 3  # residual MLP blocks
    sample_steps: int = 8  # Euler steps when sampling
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100
    max_steps: int = 2000
    max_minutes: float | None = 8.0
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(width=32, depth=1, batch_size=16, warmup_steps=2, max_steps=8, max_minutes=1.0),
        "gpu": dict(width=1024, depth=6, batch_size=512, warmup_steps=500, max_steps=20_000, max_minutes=60.0),
    }


class Block(nn.Module):
    """x + MLP(LN(x)): a residual MLP block."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.SiLU(),
                                 nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class ResidualHead(Model):
    """v_θ(x_σ, σ, h): the velocity of the residual's flow at every position (DC-AR's residual head).
    Its frozen part is the masked transformer, ``frozen("generator")``; the transformer's own frozen
    tokenizer is the hybrid tokenizer."""

    Config = ResidualHeadConfig

    def __init__(self, config: ResidualHeadConfig):
        super().__init__(config)
        c = config
        generator = checkpoint_config(c.generator)
        self.channels = checkpoint_config(generator["tokenizer"])["latent_channels"]  # C of Z_r
        D = generator["width"]
        self.inputs = nn.Linear(self.channels + D + TIME_WIDTH, c.width)
        self.blocks = nn.Sequential(*[Block(c.width) for _ in range(c.depth)])
        self.out = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, self.channels))
        self.register_buffer("residual_std", torch.tensor(0.0))  # s, set from the first batch

    @property
    def generator(self):
        """The frozen masked transformer (``frozen("generator")``): neither trained nor saved with the head."""
        return self.frozen("generator")

    def velocity(self, x_sigma: torch.Tensor, sigma: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """v_θ (B, N, C) for x_σ (B, N, C), times σ (B,) and hidden states h (B, N, D)."""
        te = flow.timestep_embedding(sigma, TIME_WIDTH)[:, None].expand(-1, x_sigma.shape[1], -1)  # (B, N, 64)
        return self.out(self.blocks(self.inputs(torch.cat([x_sigma, h, te], dim=-1))))

    @torch.no_grad()
    def condition(self, tokens: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """The transformer's hidden states (B, N, D) for complete token maps (B, N) and captions."""
        g = self.generator
        return g.hidden(tokens.to(self.device), *g.encode_text(captions))

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The flow-matching loss of a batch {"image", "caption"} (see the module docstring)."""
        with torch.no_grad():
            hybrid = self.generator.frozen("tokenizer")
            tokens, z_r = hybrid.encode(batch["image"].to(self.device))  # (B, N), (B, C, h, w)
            if self.residual_std == 0:
                self.residual_std.fill_(z_r.std().item())
            x_0 = z_r.flatten(2).transpose(1, 2) / self.residual_std  # (B, N, C), the data
            h = self.condition(tokens, batch["caption"])  # (B, N, D)
        noise = torch.randn_like(x_0)  # ε
        sigma = torch.rand(len(x_0), device=self.device)  # (B,), σ ~ U(0, 1)
        x_sigma = flow.interpolate(x_0, noise, sigma)
        return flow.flow_loss(self.velocity(x_sigma, sigma, h), x_0, noise), {}

    @torch.no_grad()
    def sample(self, h: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """A residual Z_r (B, C, side, side) for hidden states h (B, N, D): Euler steps from σ = 1 to 0."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        B, N, _ = h.shape
        h = h.to(self.device)
        noise = torch.randn(B, N, self.channels, generator=g, device=self.device)  # x at σ = 1
        x_0 = flow.euler_sample(lambda x, sigma: self.velocity(x, sigma, h), noise, self.config.sample_steps)
        side = math.isqrt(N)
        return (x_0 * self.residual_std).transpose(1, 2).reshape(B, self.channels, side, side)

    @torch.no_grad()
    def add_residual(self, tokens: torch.Tensor, captions: list[str], seed: int = 0) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1]: the hybrid decoder's D(Z_q + Z_r) with a sampled residual."""
        z_r = self.sample(self.condition(tokens, captions), seed)
        return self.generator.frozen("tokenizer").decode(tokens.to(self.device), z_r).cpu()



# --- what the residual buys ----------------------------------------------------------------------
@torch.no_grad()
def compare_residual(head: ResidualHead, metas: list[dict], n_samples: int = 4, seed: int = 0, steps: int = 8,
                     cfg: float = 3.0, world: World = World()) -> dict:
    """Discrete-only against discrete + residual, on the *same* generated tokens: MaskGIT decoding of
    ``head.generator`` (``steps``, ``cfg``) for ``n_samples`` images per prompt, decoded as D(Z_q) and
    as D(Z_q + Z_r) with the head's sampled residual. Per variant: GenEval overall, Shapes-FD against
    renders of scenes drawn for the same prompts, and PSNR to the nearest render (pooled); seconds per
    image; each with its 95 % interval, and the paired differences (GenEval overall, PSNR) on the same
    tokens. Discrete: the transformer's decoding, then D(Z_q). Hybrid: the same decoding, then one
    more transformer pass (hidden states of the final tokens), the head's Euler steps and
    D(Z_q + Z_r) instead of D(Z_q) — so its time is the discrete time − D(Z_q) + ``add_residual``."""
    generator, rng = head.generator, np.random.default_rng(seed)
    images = {"discrete": [], "discrete+residual": []}
    rows = {name: [] for name in images}
    renders, seconds = [], {"discrete": 0.0, "decoder": 0.0, "residual": 0.0}
    for index, meta in enumerate(metas):
        captions, s = [meta["prompt"]] * n_samples, sampling.prompt_seed(seed, index)
        t0 = time.perf_counter()
        result = sampling.sample(generator, captions, seed=s, steps=steps, cfg=cfg)  # tokens, then D(Z_q)
        t1 = time.perf_counter()
        with_residual = head.add_residual(result.tokens, captions, seed=s)
        t2 = time.perf_counter()
        generator.decode_tokens(result.tokens)  # D(Z_q) alone, which the hybrid does not need
        t3 = time.perf_counter()
        seconds["discrete"] += t1 - t0
        seconds["residual"] += t2 - t1
        seconds["decoder"] += t3 - t2
        renders.append(to_tensor(np.stack([world.render(world.scene_for_prompt(meta, rng))
                                           for _ in range(n_samples)])))
        for name, x in (("discrete", result.images), ("discrete+residual", with_residual)):
            images[name].append(x)
            rows[name] += [{"filename": f"{index:05d}/samples/{j:04d}.png", "tag": meta["tag"],
                            "correct": geneval.judge(image, meta, world)[0]} for j, image in enumerate(to_uint8(x))]
    real = torch.cat(renders)  # (P·n, 3, H, W)
    classifier = load_checkpoint("shapes_classifier")
    n_images = len(real)
    out, errors = [], {}
    for name, chunks in images.items():
        x = torch.cat(chunks)  # (P·n, 3, H, W)
        nearest = to_tensor(np.stack([geneval.nearest_render(image, world) for image in to_uint8(x)]))
        errors[name] = (x - nearest).square().mean((1, 2, 3)).numpy()  # (P·n,) MSE to the nearest render
        fd, fd_interval = shapes_fd_with_interval(real, x, classifier)
        total = seconds["discrete"] + (seconds["residual"] - seconds["decoder"] if name != "discrete" else 0.0)
        summary = geneval.summarize(rows[name])
        out.append({"variant": name, "overall": summary["overall"], "shapes_fd": fd,
                    "psnr_to_nearest_render": pooled_psnr(x, nearest), "seconds_per_image": total / n_images,
                    "interval": {"overall": summary["interval"]["overall"], "shapes_fd": fd_interval,
                                 "psnr_to_nearest_render": bootstrap_interval(psnr_of_errors, errors[name])}})
    geneval_gain = geneval.paired_difference(rows["discrete+residual"], rows["discrete"])["overall"]
    psnr_gain = psnr_of_errors(errors["discrete+residual"]) - psnr_of_errors(errors["discrete"])
    difference = {"overall": geneval_gain, "psnr_to_nearest_render": {
        "difference": psnr_gain, "interval": bootstrap_interval(lambda a, b: psnr_of_errors(a) - psnr_of_errors(b),
                                                                errors["discrete+residual"], errors["discrete"])}}
    return {"prompts": len(metas), "n_samples": n_samples, "steps": steps, "cfg": cfg, "seed": seed, "rows": out,
            "difference": difference,
            "extra_time": (seconds["residual"] - seconds["decoder"]) / seconds["discrete"]}
