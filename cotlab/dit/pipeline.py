"""The shipped SANA model as a diffusers pipeline of its own parts: saved, loaded and run without cotlab.

``ShapesSanaPipeline`` holds what diffusers' ``SanaPipeline`` holds — a ``SanaTransformer2DModel``, an
``AutoencoderDC``, a text encoder (transformers' ``CLIPTextModel``, the notebook-00 text tower) with its
tokenizer, and a ``FlowMatchEulerDiscreteScheduler`` — so ``save_pretrained`` writes the usual folder
(``model_index.json``, one sub-folder per part) and ``from_pretrained`` reads it back. Its ``__call__`` is
SANA's sampling loop: noise at σ = 1, flow-Euler steps of the CFG-guided velocity
v = v(∅) + w·(v(c) − v(∅)), the latent divided by the autoencoder's scaling factor and decoded.

    pipe = to_pipeline(load_checkpoint("sana"))
    pipe.save_pretrained("sana-pipeline")
    images = ShapesSanaPipeline.from_pretrained("sana-pipeline")(["a photo of a red circle"]).images
"""
from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderDC, DiffusionPipeline, FlowMatchEulerDiscreteScheduler, SanaTransformer2DModel
from diffusers.utils import BaseOutput
from transformers import CLIPTextModel, PreTrainedTokenizerFast


class ShapesSanaOutput(BaseOutput):
    """``images`` (B, 3, H, W) in [0, 1]."""
    images: torch.Tensor


class ShapesSanaPipeline(DiffusionPipeline):
    """Text to image with the notebook-04 SANA model (module docstring)."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(self, tokenizer: PreTrainedTokenizerFast, text_encoder: CLIPTextModel,
                 transformer: SanaTransformer2DModel, vae: AutoencoderDC, scheduler: FlowMatchEulerDiscreteScheduler):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae,
                              scheduler=scheduler)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token text states (B, T, D_text) and mask (B, T)."""
        tokens = self.tokenizer(list(prompts), padding="max_length", truncation=True, return_tensors="pt")
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        return self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_inference_steps: int = 20, guidance_scale: float = 4.5,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None) -> ShapesSanaOutput:
        """Images for ``prompt`` from ``latents`` (B, C, h, w) at σ = 1, or noise drawn with ``generator``."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        B, t = len(prompts), self.transformer.config
        text, mask = self.encode_prompt(prompts + [""] * B)  # (2B, T, D_text): captions, then empty
        if latents is None:
            latents = torch.randn((B, t.in_channels, t.sample_size, t.sample_size), generator=generator)
        x = latents.to(self.device)
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1], device=self.device)
        for timestep in self.scheduler.timesteps:
            cond, uncond = self.transformer(x.repeat(2, 1, 1, 1), encoder_hidden_states=text,
                                            timestep=timestep.expand(2 * B), encoder_attention_mask=mask,
                                            return_dict=False)[0].chunk(2)
            x = self.scheduler.step(uncond + guidance_scale * (cond - uncond), timestep, x).prev_sample
        images = self.vae.decode(x / self.vae.config.scaling_factor).sample  # (B, 3, H, W) in about [-1, 1]
        return ShapesSanaOutput(images=((images + 1) / 2).clamp(0, 1).cpu())


def pipeline_parts(model) -> dict:
    """The frozen parts of a ``SanaDiT`` as diffusers and transformers objects: ``tokenizer``,
    ``text_encoder`` (the text tower as a ``CLIPTextModel``) and ``vae`` (with the measured scaling factor)."""
    clip, ae = model.frozen("text_encoder"), model.frozen("autoencoder")
    text_encoder = CLIPTextModel(clip.clip.config.text_config)
    text_encoder.load_state_dict(clip.clip.text_model.state_dict())
    vae = AutoencoderDC.from_config(ae.ae.config)
    vae.load_state_dict(ae.ae.state_dict())
    vae.register_to_config(scaling_factor=float(ae.scaling_factor))  # cotlab keeps it as a measured buffer
    return {"tokenizer": clip.tokenizer, "text_encoder": text_encoder.eval(), "vae": vae.eval()}


def to_pipeline(model) -> ShapesSanaPipeline:
    """The pipeline of a ``SanaDiT`` (trained with diffusers' 1000·σ timesteps) and its frozen parts."""
    if model.config.time_scale != 1000.0:
        raise ValueError("the pipeline feeds diffusers' timesteps 1000·σ: a dense-time model (time_scale 1) needs "
                         "a scheduler of its own")
    return ShapesSanaPipeline(transformer=model.transformer,
                              scheduler=FlowMatchEulerDiscreteScheduler(shift=model.config.sample_shift),
                              **pipeline_parts(model))
