"""Plain functions as rewards: ``--reward path/to/file.py:fn`` and ``--reward package.module:fn``.

A spec's name ``PREFIX:FN`` (the part before its ``key=value`` parameters) is a *function reference* when
``PREFIX`` ends in ``.py`` or contains a ``/`` or ``\\`` (a file), or contains a ``.`` (a dotted module
path). Any other ``PREFIX:FN`` is a plugin-qualified name (``raftkit-shout:shout``). A name registered by
a plugin always wins, so a plugin may still register a dotted name.

The function is described by ``registry.info_for``, as a plugin's would be: its keyword-only arguments
with defaults are its parameters. Functions handed over as objects (the Python API) are kept in this
process under the reference they would have (``register``), so the run directory's config.yaml records
a spec a later process can load again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftkit.registry import RegistryError, RewardInfo, info_for

_lock = threading.Lock()
_files: dict[Path, Any] = {}  # loaded reward files, so a file shared by two specs runs once
_live: dict[str, Callable[..., Any]] = {}  # functions handed over as objects, by reference


def is_reference(name: str) -> bool:
    """Whether a spec name is a function reference (see the module docstring for the rule)."""
    prefix, colon, fn = name.rpartition(":")
    if not colon or not prefix or not fn:
        return False
    return is_file_prefix(prefix) or "." in prefix


def is_file_prefix(prefix: str) -> bool:
    return prefix.endswith(".py") or "/" in prefix or "\\" in prefix


def missing_function_hint(name: str) -> str:
    """A hint for ``--reward rewards.py`` (a file without its function), else ''."""
    if ":" not in name and is_file_prefix(name):
        return f" To use a function from a file, name it: '{name}:FUNCTION'."
    return ""


def label(name: str) -> str:
    """What a reference's values are logged under: the function's name (``file.py:fn`` -> ``fn``)."""
    return name.rpartition(":")[2] if is_reference(name) else name


def resolve(name: str) -> RewardInfo:
    """The RewardInfo of a function reference; a RegistryError names the file or module and the function."""
    with _lock:
        fn = _live.get(name)
    prefix, _, attr = name.rpartition(":")
    if fn is None:
        fn = _load(prefix, attr)
    if not callable(fn):
        raise RegistryError(f"--reward {name}: '{attr}' in {prefix} is not a function "
                            f"({type(fn).__name__})")
    try:
        info = info_for(fn, plugin=prefix)
    except RegistryError as e:
        raise RegistryError(f"--reward {name}: {e}") from None
    # Named by the reference, so a parameter error says which file and function it is about.
    return dataclasses.replace(info, name=name)


def _load(prefix: str, attr: str) -> Any:
    where = prefix
    if is_file_prefix(prefix):
        module = _load_file(prefix, attr)
    else:
        module = _import_module(prefix, attr)
        where = f"module {prefix}"
    obj: Any = module
    for part in attr.split("."):  # `Class.method` or `object.attribute`
        if not hasattr(obj, part):
            public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                            and getattr(v, "__module__", None) == module.__name__)
            raise RegistryError(f"--reward {prefix}:{attr}: {where} has no function '{attr}' "
                                f"(functions there: {', '.join(public) or 'none'})")
        obj = getattr(obj, part)
    return obj


def _load_file(prefix: str, attr: str) -> Any:
    ref = f"{prefix}:{attr}"
    path = Path(prefix).expanduser()
    if not path.is_file():
        what = "is a folder, not a Python file" if path.is_dir() else "no such file"
        raise RegistryError(f"--reward {ref}: {prefix}: {what}")
    key = path.resolve()
    with _lock:
        if key in _files:
            return _files[key]
        # A name of its own per file: two reward files called rewards.py must not replace each other.
        module_name = f"raftkit_reward_file_{hashlib.sha1(str(key).encode()).hexdigest()[:12]}_{key.stem}"
        spec = importlib.util.spec_from_file_location(module_name, key)
        if spec is None or spec.loader is None:
            raise RegistryError(f"--reward {ref}: cannot load {prefix} as Python (is it a .py file?)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up here
        # The file's folder is importable while it runs, so it can import its sibling modules.
        added = str(key.parent) not in sys.path
        if added:
            sys.path.insert(0, str(key.parent))
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(module_name, None)
            raise RegistryError(
                f"--reward {ref}: importing {prefix} failed: {type(e).__name__}: {e}") from None
        finally:
            if added:
                sys.path.remove(str(key.parent))
        _files[key] = module
        return module


def _import_module(name: str, attr: str) -> Any:
    ref = f"{name}:{attr}"
    # The console script's sys.path lacks the working directory; a project's own package lives there.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name) and (e.name == name or name[len(e.name)] == "."):
            raise RegistryError(f"--reward {ref}: no module named '{e.name}' (a dotted prefix names a "
                                "module; for a file write its path, e.g. ./rewards.py:FUNCTION)") from None
        raise RegistryError(f"--reward {ref}: importing module {name} failed: "
                            f"ModuleNotFoundError: {e}") from None
    except Exception as e:
        raise RegistryError(f"--reward {ref}: importing module {name} failed: "
                            f"{type(e).__name__}: {e}") from None


def register(fn: Callable[..., Any]) -> str:
    """The spec name for a function object (``module:qualname``, else ``/its/file.py:name``), kept in this
    process so that the name resolves to this very object (a script's ``__main__`` is not run again)."""
    if not callable(fn):
        raise RegistryError(f"cannot use {fn!r} as a reward: it is not a function")
    info_for(fn)  # refuses lambdas and other nameless callables, with the registry's message
    name = getattr(fn, "__name__", None) or type(fn).__name__
    qualname = getattr(fn, "__qualname__", name)
    module = getattr(fn, "__module__", None)
    if module and module != "__main__" and "." in module and "<" not in qualname:
        ref = f"{module}:{qualname}"
    else:
        try:
            source = inspect.getsourcefile(fn)
        except TypeError:
            source = None
        # Top-level functions of a script or notebook cell: by file; what has no file is still usable here.
        ref = f"{Path(source).resolve() if source else '<memory>.py'}:{name}"
    with _lock:
        _live[ref] = fn
    return ref
