"""How ``cotlab train orm|prm|parm`` trains and judges the reward models of notebook 06.

Each trains a ``RewardModel`` of its task on the verifier data (``cotlab.verification.data``, built
once and cached) and is judged by ``heldout_quality``: precision, recall and AUROC against the exact
evaluator on fresh samples of its generator at test-time temperature.
"""
from __future__ import annotations

from cotlab.harness import Recipe
from cotlab.verification.metrics import heldout_quality
from cotlab.verification.reward import RewardConfig, RewardData, RewardModel


def _recipe(task: str, description: str) -> Recipe:
    def config(profile: str) -> RewardConfig:
        return RewardConfig.for_profile(profile, task=task)

    return Recipe(task, lambda profile: RewardModel(config(profile)),
                  lambda profile, seed: RewardData(config(profile), seed), heldout_quality, description)


ORM = _recipe("orm", "ORM: yes/no on final images of maskgit, labelled by the exact evaluator")
PRM = _recipe("prm", "PRM: yes/no on every step image of maskgit, labelled by rollouts (any ends correct)")
PARM = _recipe("parm", "PARM(++): clarity, potential and selection, with reflection heads (clause, cells)")
