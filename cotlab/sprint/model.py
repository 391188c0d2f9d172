"""SANA-Sprint's student: one network that draws an image in 1, 2 or 4 steps, distilled from the
notebook-04 SANA model by continuous-time consistency (sCM) and latent adversarial distillation (LADD).

*SANA-Sprint* (arXiv 2503.09641), after sCM (*Simplifying, Stabilizing and Scaling Continuous-Time
Consistency Models*, arXiv 2410.11081) and LADD (arXiv 2403.12015). Latents are scaled to the data
deviation σ_d = 0.5: x_0 = σ_d·z for a unit-variance latent z, and noise is N(0, σ_d²).

**TrigFlow** puts data and noise on a circle: x_θ = cos θ·x_0 + sin θ·ε, θ ∈ [0, π/2], with velocity
dx_θ/dθ = σ_d·F(x_θ/σ_d, θ). A flow-matching model becomes a TrigFlow model without retraining
(``cotlab.flow.trigflow``, Prop. 3.1), so the teacher is the notebook-04 model (fine-tuned once to a
dense time embedding and QK-norm, the ``sprint_teacher`` recipe) seen through that transform.

**The consistency function** f(x_θ, θ) = cos θ·x_θ − sin θ·σ_d·F_θ(x_θ/σ_d, θ) maps every point of
an ODE trajectory to the trajectory's end x_0: one evaluation from pure noise (θ = π/2) is an image.
The condition "f is constant along the teacher's trajectories", df/dθ = 0, is trained in continuous
time. With F⁻ the student's own output without gradient and dx/dθ from the CFG-guided teacher:

    g = −cos²θ·(σ_d·F⁻ − dx/dθ) − r·cos θ·sin θ·(x_θ + σ_d·dF⁻/dθ)      the tangent (r: warm-up 0 → 1)
    g ← g / (‖g‖ + 0.1)                                                  normalised per sample
    L_sCM = E[ w(θ)/e^{u(θ)} · ‖F_θ − F⁻ − g‖² + u(θ) ],  w(θ) = 1/(σ_d·tan θ)

where dF⁻/dθ is the total derivative along the teacher's ODE, one forward-mode product
(``torch.func.jvp``) with the tangent (cos θ sin θ·dx/dθ/σ_d, cos θ sin θ), and u(θ) a learned
log-variance (adaptive weighting). The teacher's classifier-free guidance (w ∈ {4, 4.5, 5}) is
distilled into a guidance embedding (scaled by 0.1, zero-initialised): the student runs once per step.

**LADD**: the student's one-step image x̂_0 = f(x_θ, θ) (θ = π/2 for half the batch: the max-time
weighting) is re-noised to θ_D and judged by heads on the frozen teacher's features
(``cotlab.sprint.discriminator``); hinge losses L_D = ½(E relu(1 − D(real)) + E relu(1 + D(fake))),
L_G = −E D(fake), with real latents paired with the wrong captions as extra fakes. The student's loss
is λ_sCM·L_sCM + λ_adv·L_G (1 and 0.5). Both players step on the same batch from one backward
pass of L_student + L_D: D is held fixed inside L_G and the student's image detached inside L_D, so
each loss reaches only its own player (and under DDP every parameter gets its gradient averaged).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from cotlab.dit.model import SanaConfig, SanaDiT
from cotlab.flow import timestep_embedding, trigflow, trigflow_thetas
from cotlab.harness import checkpoint_config, load_checkpoint, warmup_cosine
from cotlab.sprint.discriminator import Discriminator

SIZES = ("autoencoder", "text_encoder", "width", "layers", "cross_heads", "mlp_ratio", "qk_norm", "time_scale")


class ExplicitCrossAttention:
    """Cross-attention softmax(QKᵀ/√d + mask)·V written out in fp32 (SANA-Sprint's "vanilla" attention):
    PyTorch's fused attention kernels have no forward-mode derivative, which ``torch.func.jvp`` needs.
    A diffusers attention processor, the same maths as ``SanaAttnProcessor2_0``."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)  # (B, N|T, h·d)
        if attn.norm_q is not None:
            q, k = attn.norm_q(q), attn.norm_k(k)
        q, k, v = (t.unflatten(-1, (attn.heads, -1)).transpose(1, 2).float() for t in (q, k, v))  # (B, h, N|T, d)
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5  # (B, h, N, T)
        if attention_mask is not None:  # the transformer's bias (B, 1, T): 0 on tokens, −10000 on padding
            scores = scores + attention_mask[:, None].float()
        out = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2).to(hidden_states.dtype)  # (B, N, h·d)
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


@dataclass
class SprintConfig(SanaConfig):
    """The student's sizes come from its ``teacher`` (``for_teacher``); the rest is the distillation.
    Defaults: the ``cpu`` profile of ``sprint`` (the hybrid)."""
    teacher: str = "sprint_teacher"  # the frozen TrigFlow teacher, and the student's starting weights
    scm_weight: float = 1.0  # λ_sCM (0: LADD alone)
    adv_weight: float = 0.5  # λ_adv (0: sCM alone)
    sigma_data: float = 0.5  # σ_d
    theta_mean: float = 0.2  # the student's θ = arctan(e^τ/σ_d), τ ~ N(mean, std²)
    theta_std: float = 1.6
    disc_theta_mean: float = -0.6  # the discriminator's re-noising time, likewise
    disc_theta_std: float = 1.0
    cfg_scales: tuple[float, ...] = (4.0, 4.5, 5.0)  # the teacher's guidance, distilled per sample
    guidance_scale: float = 0.1  # the guidance embedding sees 0.1·w
    tangent_warmup: int = 200  # r = min(1, step / tangent_warmup)
    max_time_prob: float = 0.5  # share of the adversarial branch generated from pure noise (θ = π/2)
    disc_blocks: tuple[int, ...] = (1, 3, 5)  # teacher blocks the discriminator heads read
    disc_lr: float = 1e-4
    grad_clip: float = 1.0
    batch_size: int = 64
    lr: float = 1e-4  # 3e-4 was tried for the hybrid: 1 step −0.011 [−0.043, +0.019], 2 steps −0.058 [−0.095, −0.024]
    warmup_steps: int = 50
    max_steps: int = 800  # the same for the three students of the ablation
    max_minutes: float | None = 30.0  # a cap; the hybrid's 800 steps take 23-27 minutes on two cores
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(batch_size=8, warmup_steps=1, tangent_warmup=2, max_steps=3, max_minutes=1.0),
        "gpu": dict(batch_size=256, max_steps=10_000, max_minutes=120.0),
    }

    def __post_init__(self):
        super().__post_init__()
        if any(not 0 <= b < self.layers for b in self.disc_blocks):
            raise ValueError(f"disc_blocks {tuple(self.disc_blocks)} must name blocks of the {self.layers}-block teacher")

    @classmethod
    def for_teacher(cls, profile: str, **overrides) -> SprintConfig:
        """The config of ``profile`` with the teacher's sizes (``overrides`` may name another teacher)."""
        teacher = overrides.get("teacher", cls.teacher)
        sizes = {k: v for k, v in checkpoint_config(teacher).items() if k in SIZES}
        return cls.for_profile(profile, **sizes, **overrides)


class SprintStudent(SanaDiT):
    """SANA-Sprint's few-step student: the teacher's transformer plus a guidance embedding, used as a
    TrigFlow consistency model, distilled by sCM and/or LADD (module docstring)."""

    Config = SprintConfig
    PROGRESS = ("scm", "adv", "disc")
    LOG_EVERY_N_STEPS = 5

    def __init__(self, config: SprintConfig):
        super().__init__(config)
        self.automatic_optimization = False  # two optimisers, each stepping on its own player's gradients
        for block in self.transformer.transformer_blocks:
            block.attn2.set_processor(ExplicitCrossAttention())
        guidance = self.transformer.time_embed.guidance_embedder.linear_2
        nn.init.zeros_(guidance.weight)  # the guidance embedding starts at zero: the student starts as the teacher
        nn.init.zeros_(guidance.bias)
        self.log_variance = nn.Linear(256, 1)  # u(θ), on sinusoidal features of θ's flow time
        nn.init.zeros_(self.log_variance.weight)
        nn.init.zeros_(self.log_variance.bias)
        self.log_variance.requires_grad_(bool(config.scm_weight))  # it weights L_sCM only: no gradient without it
        self.discriminator = Discriminator(config.width, config.disc_blocks) if config.adv_weight else None

    def transformer_options(self) -> dict:
        return {"guidance_embeds": True}

    # --- the network -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                cfg: torch.Tensor) -> torch.Tensor:
        """The flow velocity (B, C, h, w) at x_σ (B, C, h, w), σ (B,), for captions' states (B, T, D_text),
        mask (B, T) and the distilled guidance weights w (B,)."""
        return self.transformer(x, encoder_hidden_states=text, timestep=self.config.time_scale * sigma,
                                guidance=self.config.guidance_scale * cfg, encoder_attention_mask=text_mask,
                                return_dict=False)[0]

    def trigflow(self, x: torch.Tensor, theta: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                 cfg: torch.Tensor) -> torch.Tensor:
        """F_θ(x, θ) (B, C, h, w) at unit-scale TrigFlow latents x = x_θ/σ_d (B, C, h, w), θ (B,)."""
        return trigflow(lambda x_sigma, sigma: self(x_sigma, sigma, text, text_mask, cfg), x, theta)

    def paths(self, captions: list[str], seeds=0, steps: int = 1, cfg: float = 4.5):
        """Sampling paths (``cotlab.sampling``): ``steps`` consistency steps (1, 2, 4: SANA-Sprint's
        times; others uniform in θ), the teacher's guidance ``cfg`` as the embedding's input."""
        from cotlab.sprint.decoding import SprintPaths

        return SprintPaths(self, captions, seeds, steps, cfg)

    # --- the teacher ---------------------------------------------------------------------------
    def teacher_velocity(self, x: torch.Tensor, theta: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                         cfg: torch.Tensor) -> torch.Tensor:
        """The guided teacher's F (B, C, h, w) at unit-scale x (B, C, h, w), θ (B,), with text states
        (2B, T, D_text) and mask (2B, T) of the captions then the empty ones, and guidance w (B,)."""
        teacher = self.frozen("teacher")

        def guided(x_sigma, sigma):
            cond, uncond = teacher(x_sigma.repeat(2, 1, 1, 1), sigma.repeat(2), text, text_mask).chunk(2)
            return uncond + cfg[:, None, None, None] * (cond - uncond)

        return trigflow(guided, x, theta)

    # --- training ------------------------------------------------------------------------------
    def consistency_loss(self, x_t: torch.Tensor, theta: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                         cfg: torch.Tensor) -> torch.Tensor:
        """L_sCM (module docstring) at x_θ (B, C, h, w) (σ_d scale), θ (B,); text as for ``teacher_velocity``."""
        c, sd = self.config, self.config.sigma_data
        B = len(x_t)
        own_text, own_mask = text[:B], text_mask[:B]
        with torch.no_grad():
            dxdt = sd * self.teacher_velocity(x_t / sd, theta, text, text_mask, cfg)  # dx_θ/dθ on the teacher's ODE
            r = min(1.0, self.global_step / max(c.tangent_warmup, 1))
            F_minus, g = consistency_tangent(lambda x, t: self.trigflow(x, t, own_text, own_mask, cfg),
                                             x_t, theta, dxdt, sd, r)
            g = g / (g.flatten(1).norm(dim=1)[:, None, None, None] + 0.1)  # normalised per sample
        F = self.trigflow(x_t / sd, theta, own_text, own_mask, cfg)
        weight = 1 / (sd * theta.tan())  # (B,)
        u = self.log_variance(timestep_embedding(theta.sin() / (theta.sin() + theta.cos()), 256))[:, 0]  # (B,)
        per_sample = ((F - F_minus - g) ** 2).flatten(1).mean(dim=1)  # (B,)
        return (weight / u.exp() * per_sample + u).mean()

    def judge(self, x_0: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Discriminator logits (B, heads·N) of clean latents x_0 (B, C, h, w) (σ_d scale), re-noised to
        θ_D ~ arctan(e^τ/σ_d), τ ~ N(−0.6, 1)."""
        c = self.config
        theta = trigflow_thetas(len(x_0), c.disc_theta_mean, c.disc_theta_std, c.sigma_data, device=x_0.device)
        cos, sin = theta.cos()[:, None, None, None], theta.sin()[:, None, None, None]
        x_theta = cos * x_0 + sin * c.sigma_data * torch.randn_like(x_0)
        return self.discriminator(self.frozen("teacher"), x_theta / c.sigma_data, theta, text, text_mask)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        c, sd = self.config, self.config.sigma_data
        x_0 = self.encode_images(batch["image"]) * sd  # (B, C, h, w), deviation σ_d
        B = len(x_0)
        text, text_mask = self.encode_text(list(batch["caption"]) + [""] * B)  # (2B, T, D_text): captions, then empty
        own_text, own_mask = text[:B], text_mask[:B]
        cfg = torch.tensor(c.cfg_scales, device=self.device)[torch.randint(len(c.cfg_scales), (B,), device=self.device)]
        theta = trigflow_thetas(B, c.theta_mean, c.theta_std, sd, device=self.device)  # (B,)
        noise = sd * torch.randn_like(x_0)
        mix = lambda t: t.cos()[:, None, None, None] * x_0 + t.sin()[:, None, None, None] * noise  # x_θ
        optimizers = self.optimizers() if self.discriminator is not None else [self.optimizers()]
        logs, loss = {}, 0.0

        if c.scm_weight:
            logs["scm"] = self.consistency_loss(mix(theta), theta, text, text_mask, cfg)
            loss = loss + c.scm_weight * logs["scm"]
        if c.adv_weight:
            theta_g = torch.where(torch.rand(B, device=self.device) < c.max_time_prob,
                                  torch.full_like(theta, torch.pi / 2), theta)  # the max-time weighting
            x_g = mix(theta_g)
            F = self.trigflow(x_g / sd, theta_g, own_text, own_mask, cfg)
            fake = theta_g.cos()[:, None, None, None] * x_g - theta_g.sin()[:, None, None, None] * sd * F  # x̂_0
            self.discriminator.requires_grad_(False)  # L_G moves the student only
            logs["adv"] = -self.judge(fake, own_text, own_mask).mean()
            self.discriminator.requires_grad_(True)
            loss = loss + c.adv_weight * logs["adv"]
            # the discriminator's loss on real, generated and misaligned latents
            real = self.judge(x_0, own_text, own_mask)
            fakes = self.judge(torch.cat([fake.detach(), x_0.roll(1, dims=0)]), text[:B].repeat(2, 1, 1),
                               own_mask.repeat(2, 1))
            logs["disc"] = hinge_loss(real, fakes)
        for optimizer in optimizers:
            optimizer.zero_grad()
        self.manual_backward(loss + logs.get("disc", 0.0))
        self.clip_gradients(optimizers[0], gradient_clip_val=c.grad_clip, gradient_clip_algorithm="norm")
        optimizers[0].step()
        self.lr_schedulers().step()
        if c.adv_weight:
            optimizers[1].optimizer.step()  # the raw optimizer: Lightning's global_step counts the student's steps only
        self.log("train_loss", loss, prog_bar=True, batch_size=B)
        for name, value in logs.items():
            self.log(f"train_{name}", value, prog_bar=name in self.PROGRESS, batch_size=B)

    def configure_optimizers(self):
        """AdamW for the student (warm-up then cosine decay over ``max_steps``), AdamW at a constant
        ``disc_lr`` for the discriminator's heads."""
        c = self.config
        student = [p for name, p in self.named_parameters() if not name.startswith("discriminator.")]
        opt_g = torch.optim.AdamW(student, lr=c.lr, weight_decay=c.weight_decay, betas=self.BETAS)
        schedule = {"scheduler": warmup_cosine(opt_g, c.warmup_steps, c.max_steps), "interval": "step"}
        if self.discriminator is None:
            return {"optimizer": opt_g, "lr_scheduler": schedule}
        opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=c.disc_lr, betas=self.BETAS)
        return [opt_g, opt_d], [schedule]


def hinge_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """LADD's discriminator loss on logits of real and fake latents (the student's and misaligned ones):
    L_D = ½ (E[max(0, 1 − D(real))] + E[max(0, 1 + D(fake))])."""
    return 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())


@torch.no_grad()
def consistency_tangent(F, x_t: torch.Tensor, theta: torch.Tensor, dxdt: torch.Tensor, sigma_data: float,
                        r: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """F⁻ = F(x_θ/σ_d, θ) (B, C, h, w) and sCM's tangent (B, C, h, w), not yet normalised,

        g = −cos²θ·(σ_d·F⁻ − dx/dθ) − r·cos θ·sin θ·(x_θ + σ_d·dF⁻/dθ)   (= cos θ·df/dθ at r = 1),

    for a TrigFlow network ``F(x, θ)`` at x_θ (B, C, h, w) (σ_d scale), θ (B,), and the teacher's
    dx_θ/dθ (B, C, h, w). f = cos θ·x_θ − sin θ·σ_d·F is the consistency function, so g = 0 exactly when
    f stays constant along the teacher's trajectories. dF⁻/dθ is the total derivative along them,
    ∂F/∂x·(dx/dθ)/σ_d + ∂F/∂θ: one ``torch.func.jvp``, fed SANA-Sprint's tangent (cos θ sin θ·dx/dθ/σ_d,
    cos θ sin θ) so that it returns cos θ sin θ·dF⁻/dθ directly."""
    cs = theta.cos() * theta.sin()  # (B,)
    cos, cs4 = theta.cos()[:, None, None, None], cs[:, None, None, None]
    F_minus, cs_dF = torch.func.jvp(F, (x_t / sigma_data, theta), (cs4 * dxdt / sigma_data, cs))
    return F_minus, -cos ** 2 * (sigma_data * F_minus - dxdt) - r * (cs4 * x_t + sigma_data * cs_dF)


def start_from_teacher(student: SprintStudent) -> SprintStudent:
    """Copy the teacher's transformer into the student's: every tensor but the (zero) guidance embedding.
    diffusers names the timestep MLP ``time_embed.emb.*`` without a guidance embedding, ``time_embed.*`` with."""
    teacher = load_checkpoint(student.config.teacher).transformer.state_dict()
    weights = {key.replace("time_embed.emb.", "time_embed."): value for key, value in teacher.items()}
    missing, unexpected = student.transformer.load_state_dict(weights, strict=False)
    if unexpected or any(not key.startswith("time_embed.guidance_") for key in missing):
        raise RuntimeError(f"the teacher {student.config.teacher} does not fit the student: "
                           f"missing {missing}, unexpected {unexpected}")
    return student
