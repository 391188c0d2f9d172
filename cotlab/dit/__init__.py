"""Notebook 04: SANA's linear diffusion transformer on deep-compressed latents, and SANA 1.5's scaling.

``attention``: ReLU linear attention from scratch (checked against diffusers' processor) and its
benchmark against softmax; ``model``: the text-to-image ``SanaDiT`` on diffusers'
``SanaTransformer2DModel``, trained by flow matching; ``decoding``: its sampling paths (flow Euler,
Flow-DPM-Solver); ``recipes``, ``bench``.
"""
