"""The SANA-Sprint student as a diffusers pipeline of its own parts (as ``cotlab.dit.pipeline`` for the teacher).

``ShapesSanaSprintPipeline`` holds what diffusers' ``SanaSprintPipeline`` holds: the student's
``SanaTransformer2DModel`` (with its guidance embedding), the autoencoder, the text encoder and
tokenizer, and an ``SCMScheduler``. Its loop is ``cotlab.sprint.decoding``'s: x = σ_d·ε at θ_0, then per
step the TrigFlow output of the transformer (dense time, the guidance w fed as 0.1·w) and the
scheduler's jump x̂_0 = cos θ·x − sin θ·σ_d·F, re-noised to the next time.
"""
from __future__ import annotations

import torch
from diffusers import SCMScheduler

from cotlab.dit.pipeline import ShapesSanaOutput, ShapesSanaPipeline, pipeline_parts
from cotlab.flow import trigflow
from cotlab.sprint.decoding import sampling_times


class ShapesSanaSprintPipeline(ShapesSanaPipeline):
    """Text to image in 1, 2 or 4 steps with the distilled student (module docstring)."""

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_inference_steps: int = 1, guidance_scale: float = 4.5,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 guidance_embeds_scale: float = 0.1) -> ShapesSanaOutput:
        """Images for ``prompt``; ``latents`` (B, C, h, w) unit-scale noise, or drawn with ``generator``,
        which also draws each step's fresh noise."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        B, t, sd = len(prompts), self.transformer.config, self.scheduler.config.sigma_data
        text, mask = self.encode_prompt(prompts)
        if latents is None:
            latents = torch.randn((B, t.in_channels, t.sample_size, t.sample_size), generator=generator)
        x = sd * latents.to(self.device)
        guidance = torch.full((B,), guidance_embeds_scale * guidance_scale, device=self.device)
        velocity = lambda x_sigma, sigma: self.transformer(  # dense time: σ itself is the timestep
            x_sigma, encoder_hidden_states=text, timestep=sigma, guidance=guidance, encoder_attention_mask=mask,
            return_dict=False)[0]
        self.scheduler.set_timesteps(num_inference_steps, timesteps=sampling_times(num_inference_steps),
                                     max_timesteps=None, intermediate_timesteps=None, device=self.device)
        for theta in self.scheduler.timesteps[:-1]:
            F = trigflow(velocity, x / sd, theta.expand(B))
            x = self.scheduler.step(sd * F, theta, x, generator=generator).prev_sample
        images = self.vae.decode(x / sd / self.vae.config.scaling_factor).sample  # (B, 3, H, W) in about [-1, 1]
        return ShapesSanaOutput(images=((images + 1) / 2).clamp(0, 1).cpu())


def to_pipeline(student) -> ShapesSanaSprintPipeline:
    """The pipeline of a ``SprintStudent`` (dense time, as SANA-Sprint's) and its frozen parts."""
    if student.config.time_scale != 1.0:
        raise ValueError("the pipeline feeds σ itself as the timestep: the student must have dense time (time_scale 1)")
    return ShapesSanaSprintPipeline(transformer=student.transformer,
                                    scheduler=SCMScheduler(sigma_data=student.config.sigma_data), **pipeline_parts(student))
