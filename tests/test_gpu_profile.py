"""The gpu profile, which nobody can run here, still builds, and is larger than the cpu one.

Models are built on the meta device: shapes without memory, so even the largest costs nothing.
"""

import pytest
import torch

from cotlab.registry import RECIPES, get_recipe


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_gpu_profile_builds_and_is_larger_than_cpu(name):
    recipe = get_recipe(name)
    with torch.device("meta"):
        gpu, cpu = recipe.build("gpu"), recipe.build("cpu")
    assert all(p.is_meta for p in gpu.parameters())
    assert parameter_count(gpu) > parameter_count(cpu)
