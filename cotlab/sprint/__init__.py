"""Notebook 05: SANA-Sprint's one-step generator — TrigFlow, continuous-time consistency distillation
(sCM) and latent adversarial distillation (LADD) of the notebook-04 SANA model."""
