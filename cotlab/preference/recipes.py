"""How ``cotlab train dpo|dpo_two_masks|it_dpo|dpo_guidance_released|dpo_guidance|grpo|grpo_parm|grpo_oracle``
trains and judges the aligned generators of notebook 07.

Each starts from a shipped generator (``base``) and is judged like it (GenEval on the benchmark
prompts × 4, ``cotlab.sampling.benchmark_metrics``), and also on the held-out bindings
(``heldout_metadata.jsonl``, 124 prompts × 4), which no recipe ever trains on.
"""
from __future__ import annotations

from cotlab.geneval import benchmark_prompts
from cotlab.harness import Recipe
from cotlab.preference.dpo import DPO, DPOConfig, PairData
from cotlab.preference.grpo import GRPO, GRPOConfig
from cotlab.preference.policy import PromptData, start_from_base
from cotlab.sampling import benchmark_metrics, evaluate_generator


def evaluate(model, profile: str) -> dict:
    """The benchmark's GenEval (as for ``maskgit``) and the held-out bindings' overall with its interval."""
    metrics = benchmark_metrics(model, profile)
    metas = benchmark_prompts(heldout=True)
    smoke = profile == "smoke"
    heldout = evaluate_generator(model, metas[::40] if smoke else metas, n_samples=1 if smoke else 4, progress=False)
    return {**metrics, "heldout_overall": heldout["overall"],
            "heldout_overall_interval": [round(v, 4) for v in heldout["interval"]["overall"]]}


def _dpo(name: str, description: str, **overrides) -> Recipe:
    def config(profile: str) -> DPOConfig:
        return DPOConfig.for_base(profile, **overrides)

    return Recipe(name, lambda profile: start_from_base(DPO(config(profile))),
                  lambda profile, seed: PairData(config(profile), seed), evaluate, description)


def _grpo(name: str, description: str, **overrides) -> Recipe:
    def config(profile: str) -> GRPOConfig:
        return GRPOConfig.for_base(profile, **overrides)

    return Recipe(name, lambda profile: start_from_base(GRPO(config(profile))),
                  lambda profile, seed: PromptData(config(profile).prompts_per_step, seed), evaluate, description)


DPO_RECIPE = _dpo("dpo", "DPO on maskgit's own samples, pairs labelled by the fine-tuned ORM (one shared mask per pair)")
DPO_TWO_MASKS = _dpo("dpo_two_masks", "DPO masked as the paper's released train_dpo.py does: chosen and rejected "
                     "under two independent masks", shared_mask=False)
IT_DPO = _dpo("it_dpo", "iterative DPO: a second round on the dpo model's own samples, relabelled by the ORM "
              "(a fifth of the first round's step size: at the same 1e-4 the second round collapsed)",
              base="dpo", data_seed=2, lr=2e-5)
DPO_GUIDANCE_RELEASED = _dpo("dpo_guidance_released", "DPO plus the paper's released reward-guidance term "
                             "(a constant: no gradient)", guidance="released")
DPO_GUIDANCE = _dpo("dpo_guidance", "DPO plus a reward-guidance term that trains (on-policy GRPO with the ORM)",
                    guidance="training")
GRPO_RECIPE = _grpo("grpo", "GRPO from maskgit with the fine-tuned ORM's reward (trajectory log-probability)")
GRPO_PARM = _grpo("grpo_parm", "GRPO from maskgit with PARM's reward (its P(yes) of the final image)", reward="parm")
GRPO_ORACLE = _grpo("grpo_oracle", "GRPO from maskgit with the exact evaluator's reward (the ceiling)", reward="oracle")
