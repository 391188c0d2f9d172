"""The numbers a user types on the command line, checked as argparse reads them: a bad one is refused
before any work starts, in one line that says what is expected (``type=count`` and so on)."""
from __future__ import annotations

import argparse
import math

SEED_MAX = 2**32 - 1  # NumPy's and torch's seeds are unsigned 32-bit


def _number(text: str, kind: type, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def count(text: str) -> int:
    """A whole number of things (steps, samples, prompts …): 1 or more."""
    value = _number(text, int, "a whole number of 1 or more")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a whole number of 1 or more")
    return value


def seed(text: str) -> int:
    """A random seed: 0 … 2³² − 1."""
    value = _number(text, int, f"a seed, a whole number 0 … {SEED_MAX}")
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} is not a seed: use a whole number 0 … {SEED_MAX}")
    return value


def weight(text: str) -> float:
    """A guidance weight: a finite number, 0 or more (1: no guidance, 0: the unconditional model)."""
    value = _number(text, float, "a finite number of 0 or more, e.g. 3")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not a guidance weight: use 0 or more, e.g. 3")
    return value
