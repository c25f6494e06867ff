"""Every docstring example in raftkit, its built-in plugins included, runs as written (pytest does not
collect doctests from the package by itself)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import raftkit


def test_every_docstring_example_holds():
    failed, attempted = [], 0
    for info in pkgutil.walk_packages(raftkit.__path__, "raftkit."):
        result = doctest.testmod(importlib.import_module(info.name), optionflags=doctest.ELLIPSIS)
        attempted += result.attempted
        if result.failed:
            failed.append(f"{info.name}: {result.failed} of {result.attempted}")
    assert not failed, failed
    assert attempted >= 60  # the examples were found at all (63 when this was written)
