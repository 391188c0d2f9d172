"""Notebook 07: aligning the masked generator with preferences — DPO, iterative DPO and GRPO.

After *Can We Generate Images with CoT?* (arXiv 2501.13926, §2 of its notes) and its RL follow-ups.
``dpo``: the DPO objective for a masked generator, whose log-likelihood is estimated on masked
positions (chosen and rejected images under one shared mask).
"""
