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
}


def get_recipe(name: str) -> Recipe:
    """The ``Recipe`` registered as ``name``."""
    if name not in RECIPES:
        raise CotlabError(f"unknown model '{name}': choose one of {', '.join(sorted(RECIPES))}")
    module, attribute = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), attribute)
