"""cotlab: a hands-on workbook for modern image generation.

Numbered notebooks in ``notebooks/`` teach tokenizers, masked and next-X autoregression, linear
diffusion transformers, one-step distillation, reward models for step-by-step verification and DPO.
Each notebook calls one module of this package, where the algorithm lives as a Lightning module
trained from scratch on the procedurally rendered Shapes world, small enough for a laptop CPU.
Importing the package is cheap; import the submodule you need (``cotlab.harness``, ``cotlab.shapes`` …).
"""

__version__ = "0.1.0"
