"""Notebook 03: next-X prediction (xAR) — what a "token" can be, flow matching per autoregressive step,
and noisy context learning against exposure bias.

``entities``: the five ways to cut a latent into autoregressive steps; ``model``: the block-causal
``XAR`` transformer trained by flow matching with noisy or clean context; ``decoding``: its sampling
paths (per entity, ODE or SDE, guidance ramped); ``recipes``, ``bench`` (the entity table, NCL against
teacher forcing, the exposure-bias curve), ``figures``, ``viewer``.
"""
