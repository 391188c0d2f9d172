"""Masked autoregression of notebook 02: how a transformer writes an image as tokens.

- ``model``: a text-conditioned token transformer trained either masked (MaskGIT) or in raster order
  (the autoregressive baseline), over the tokens of a frozen tokenizer from notebook 01.
- ``decoding``: MaskGIT's confidence-based parallel decoding (with per-step intermediate images) and
  raster decoding, each reporting its cost in forward passes.
"""
