"""Masked autoregression of notebook 02: how a transformer writes an image as tokens.

- ``model``: a text-conditioned token transformer trained either masked (MaskGIT) or in raster order
  (the autoregressive baseline), over the tokens of a frozen tokenizer from notebook 01.
- ``decoding``: MaskGIT's confidence-based parallel decoding and raster decoding, as the
  ``cotlab.sampling.Paths`` every search works through (``MaskedAR.paths``).
- ``dcar``: DC-AR's residual head, flow matching of the hybrid tokenizer's continuous residual.
- ``recipes`` (``cotlab train``), ``bench`` (``cotlab bench decoding|hybrid``), ``figures`` and
  ``viewer`` (the decoding viewer).
"""
