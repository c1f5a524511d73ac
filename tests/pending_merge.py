"""Modules that other branches are adding, which compose.yaml and the Procfile already run.

The checks that need them are strict expected failures (or, for the whole-stack test,
skipped) while a module is listed here. When a branch lands, its module exists, the strict
xfail turns into a failure saying so, and the lead deletes the entry: from then on the
check runs for real. A module missing and NOT listed here fails at once, so compose.yaml
cannot name a module that nobody is writing.
"""

from __future__ import annotations

import importlib.util

AWAITING_MERGE: dict[str, str] = {}


def module_exists(name: str) -> bool:
    """True if `name` can be imported (its parent packages too)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def still_awaited() -> list[str]:
    """Listed modules that are still missing."""
    return [name for name in AWAITING_MERGE if not module_exists(name)]
