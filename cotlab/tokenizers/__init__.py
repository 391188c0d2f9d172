"""Tokenizers of notebook 01: how an image becomes a few tokens or latents, and back.

- ``vq``: a VQ-VAE/VQGAN-style discrete tokenizer (f8: one token per 8×8 grid cell; f4 to compare),
  with the remedies against codebook collapse (EMA codebook, k-means init, dead-code restarts).
- ``dcae``: deep-compression autoencoders, diffusers' ``AutoencoderDC`` at toy size (f4, f8).
- ``hybrid``: the hybrid tokenizer (HART / DC-AR's DC-HT): discrete tokens plus a continuous residual,
  one decoder for both.
- ``metrics``: how good a tokenizer is — evaluator agreement, codebook usage and perplexity, and
  ``evaluate_tokenizer``, which adds PSNR, SSIM and Shapes-FD from ``cotlab.metrics``.
- ``recipes``: how ``cotlab train`` trains and judges each of the eight shipped tokenizers.
- ``bench``: ``cotlab bench tokenizers``, every shipped tokenizer side by side (rate, quality, speed).
- ``viewer``: ``TokenViewer``, the widget that shows an image's tokens, codes and residual.
- ``figures``: ``rate_quality``, rate against quality of the bench's rows.

Every tokenizer is a ``cotlab.harness.Model`` with the same small interface, so notebooks and
``cotlab bench tokenizers`` treat them alike; images are (B, 3, H, W) floats in [0, 1]:

    reconstruct(images) -> images          # encode then decode
    tokens_per_image: int                  # positions a generator must produce
    bits_per_image: float                  # discrete: N·log2 K; continuous values count 16 bits
"""
