"""Verification of notebook 06: judging image generation step by step, after *Can We Generate Images
with CoT?* (arXiv 2501.13926), on any generator that offers ``cotlab.sampling.Paths``.

- ``data``: reward-model data from the generator's own samples (exact labels, Monte-Carlo rollouts).
- ``reward``: ORM, PRM and PARM (with PARM++'s reflection heads) on the CLIP towers of notebook 00.
- ``search``: best-of-N, step-level PRM search, PARM with pruning, PARM++ reflection, and
  ``VERIFIERS``, the one table of them by name.
- ``evaluate``: every strategy on the same candidates; ``metrics``: precision, recall, AUROC.
- ``recipes`` (``cotlab train orm|prm|parm``), ``bench`` (``cotlab bench verification``),
  ``figures`` and ``viewer`` (the per-step reward viewer).
"""
