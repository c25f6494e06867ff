"""Every docstring example in raftkit and its built-in plugins runs as written (pytest does not collect
doctests from the package by itself)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import raftkit
import raftkit_plugins


def test_every_docstring_example_holds():
    failed, attempted = [], 0
    for package in (raftkit, raftkit_plugins):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            result = doctest.testmod(importlib.import_module(info.name), optionflags=doctest.ELLIPSIS)
            attempted += result.attempted
            if result.failed:
                failed.append(f"{info.name}: {result.failed} of {result.attempted}")
    assert not failed, failed
    assert attempted >= 60  # the examples were found at all (63 when this was written)
