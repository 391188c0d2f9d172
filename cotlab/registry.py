"""The trainable models ``cotlab train NAME`` knows, each a ``Recipe`` imported only when asked for."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cotlab.errors import CotlabError

if TYPE_CHECKING:
    from cotlab.harness import Recipe

# name -> "module:attribute" of its Recipe
RECIPES = {
    "clip": "cotlab.clip:RECIPE",
    "shapes_classifier": "cotlab.tokenizers.metrics:RECIPE",
    "vq_f8": "cotlab.tokenizers.vq:RECIPE_F8",
    "vq_f4": "cotlab.tokenizers.vq:RECIPE_F4",
    "vq_f8_plain": "cotlab.tokenizers.vq:RECIPE_F8_PLAIN",
    "dcae_f8": "cotlab.tokenizers.dcae:RECIPE_F8",
    "dcae_f4": "cotlab.tokenizers.dcae:RECIPE_F4",
    "dcae_f8_noshortcut": "cotlab.tokenizers.dcae:RECIPE_F8_NOSHORTCUT",
    "hybrid_f8": "cotlab.tokenizers.hybrid:RECIPE",
    "hybrid_f8_alternating": "cotlab.tokenizers.hybrid:RECIPE_ALTERNATING",
    "maskgit": "cotlab.masked_ar.model:RECIPE_MASKGIT",
    "raster_ar": "cotlab.masked_ar.model:RECIPE_RASTER",
    "maskgit_f4": "cotlab.masked_ar.model:RECIPE_MASKGIT_F4",
    "raster_ar_f4": "cotlab.masked_ar.model:RECIPE_RASTER_F4",
    "maskgit_hybrid": "cotlab.masked_ar.model:RECIPE_MASKGIT_HYBRID",
    "dcar_head": "cotlab.masked_ar.dcar:RECIPE",
    "orm": "cotlab.verification.reward:RECIPE_ORM",
    "prm": "cotlab.verification.reward:RECIPE_PRM",
    "parm": "cotlab.verification.reward:RECIPE_PARM",
}


def get_recipe(name: str) -> Recipe:
    """The ``Recipe`` registered as ``name``."""
    if name not in RECIPES:
        raise CotlabError(f"unknown model '{name}': choose one of {', '.join(sorted(RECIPES))}")
    module, attribute = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), attribute)
