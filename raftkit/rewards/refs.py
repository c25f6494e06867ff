"""Plain functions as rewards: ``--reward path/to/file.py:fn`` and ``--reward package.module:fn``.

A spec's name ``PREFIX:FN`` (the part before its ``key=value`` parameters) is a *function reference* when
``PREFIX`` ends in ``.py`` or contains a ``/`` or ``\\`` (a file), or contains a ``.`` (a dotted module
path). Any other ``PREFIX:FN`` is a plugin-qualified name (``raftkit-shout:shout``). A name registered by
a plugin always wins, so a plugin may still register a dotted name.

The function is described by ``info_for`` (raftkit.rewards.info), as a plugin's would be: its
keyword-only arguments with defaults are its parameters. Functions handed over as objects (the Python
API) are kept in this process under the reference they would have (``register``), so the run
directory's config.yaml records a spec a later process can load again.

A reference may also name a *factory*: a class, or a function that takes no completions (neither
``completions``, ``prompts``, ``completion_ids`` nor ``**kwargs``), such as trl.rewards'
``get_soft_overlong_punishment``. Its arguments are then the reward's parameters, and the reward is what
it returns (built once per distinct set of arguments):
``--reward trl.rewards:get_soft_overlong_punishment:max_completion_len=16,soft_punish_cache=4``. A
callable object handed over from Python is recorded this way, as its class and its attributes
(``{name: module:Class, params: {...}}``), when its attributes are plain JSON data and the class rebuilds
it from them; loading such a record imports the class's module and calls the class, nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import threading
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftkit.rewards.info import RegistryError, RewardInfo, info_for

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
    """What a reference's values are logged under: the function's name (``file.py:fn`` -> ``fn``); for a
    class, the ``__name__`` its instances carry (TRL logs a reward object under it), else the class's."""
    if not is_reference(name):
        return name
    prefix, _, attr = name.rpartition(":")
    with _lock:
        obj = _live.get(name)
    if obj is None:
        try:
            obj = _load(prefix, attr)
        except RegistryError:  # reported by resolve, where the stack is built
            return attr
    own = vars(obj).get("__name__") if inspect.isclass(obj) else None
    return own if isinstance(own, str) and own else attr


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
    if is_factory(fn):
        fn = _factory_reward(fn, label(name))
    try:
        info = info_for(fn, plugin=prefix)
    except RegistryError as e:
        raise RegistryError(f"--reward {name}: {e}") from None
    # Named by the reference, so a parameter error says which file and function it is about.
    return dataclasses.replace(info, name=name)


_CALL_ARGUMENTS = ("prompts", "completions", "completion_ids")


def is_factory(obj: Any) -> bool:
    """A class, or a function that cannot take a reward call (no completions, no ``**kwargs``)."""
    if inspect.isclass(obj):
        return True
    if not inspect.isfunction(obj):
        return False
    params = inspect.signature(obj).parameters.values()
    return not any(p.kind is inspect.Parameter.VAR_KEYWORD or p.name in _CALL_ARGUMENTS for p in params)


def _factory_reward(factory: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A reward whose keyword-only parameters are ``factory``'s arguments: each call builds (once per
    distinct set of arguments) what the factory returns and calls it with the rest."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable annotations: the values pass through as given
        hints = {}
    P = inspect.Parameter
    args = [p for p in inspect.signature(factory).parameters.values()
            if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)]
    made: dict[str, Any] = {}
    lock = threading.Lock()

    def reward(*call_args: Any, **kwargs: Any) -> Any:
        given = {p.name: kwargs.pop(p.name) for p in args if p.name in kwargs}
        key = json.dumps(given, sort_keys=True, default=repr)
        with lock:
            if key not in made:
                made[key] = factory(**given)
            obj = made[key]
        return obj(*call_args, **kwargs)

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = inspect.getdoc(factory)
    reward.__annotations__ = {p.name: hints.get(p.name, Any) for p in args}
    reward.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        P("prompts", P.POSITIONAL_OR_KEYWORD, default=None),
        P("completions", P.POSITIONAL_OR_KEYWORD, default=None),
        *(p.replace(kind=P.KEYWORD_ONLY, annotation=hints.get(p.name, Any)) for p in args),
        P("kwargs", P.VAR_KEYWORD),
    ])
    return reward


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


def register(fn: Callable[..., Any], resumable: bool = False) -> str | dict[str, Any]:
    """The spec for a reward handed over as an object: a function's reference (``module:qualname``, else
    ``/its/file.py:name``), kept in this process so that it resolves to this very object (a script's
    ``__main__`` is not run again); a callable object's class and attributes (``{name, params}``, see the
    module docstring); a ``functools.partial`` of a function with keyword-only parameters, the function
    with those parameters.

    ``resumable``: the spec must load in another process (a run records it to be resumed); what cannot
    (a closure, an object whose attributes are not plain data) raises a RegistryError saying how to make
    it so. Otherwise such a reward gets a reference that only this process resolves.
    """
    if not callable(fn):
        raise RegistryError(f"cannot use {fn!r} as a reward: it is not a function")
    if isinstance(fn, functools.partial):
        spec, why = _partial_spec(fn)
    elif inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        info_for(fn)  # refuses lambdas and other nameless callables, with the registry's message
        spec, why = _function_ref(fn)
    else:
        spec, why = _object_spec(fn)
    if spec is not None:
        if isinstance(spec, str):
            with _lock:
                _live[spec] = fn
        return spec
    if resumable:
        raise RegistryError(f"{why}, so a run cannot record it to resume from. {_HOW}")
    info_for(fn)  # a nameless object is refused here too
    return _keep(fn)


_HOW = ("To make it resumable, define the function at module level in an importable module or a file, or "
        "make the reward a class whose __init__ takes JSON-able arguments and keeps them as attributes of "
        "the same names (as trl.rewards does), or name a factory with its arguments: "
        "--reward module:factory:arg=value")


def _prefix(module: str | None, obj: Any) -> str | None:
    """The reference prefix for something defined in ``module``: a dotted module path where it is one,
    else its source file (a script's ``__main__``, a top-level module); None without a file."""
    if module and module != "__main__" and "." in module:
        return module
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:
        source = None
    return str(Path(source).resolve()) if source else None


def _function_ref(fn: Callable[..., Any]) -> tuple[str | None, str]:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    qualname = getattr(fn, "__qualname__", name)
    if inspect.ismethod(fn) and not inspect.isclass(fn.__self__):  # `Class.method` would lose its object
        return None, f"reward '{qualname}' is a method bound to an object"
    if "<locals>" in qualname:
        outer = qualname.split(".<locals>")[0].rpartition(".")[2]
        return None, f"reward '{name}' was made inside {outer}() (a closure)"
    prefix = _prefix(getattr(fn, "__module__", None), fn)
    if prefix is None:
        return None, f"reward '{name}' has no source file (defined interactively)"
    # A module path names the function by its qualified name; a file, by the name it is bound to.
    return f"{prefix}:{qualname if '.' in prefix and not is_file_prefix(prefix) else name}", ""


def _object_spec(obj: Any) -> tuple[str | dict[str, Any] | None, str]:
    cls = type(obj)
    what = f"reward object {cls.__qualname__}"
    if "<locals>" in cls.__qualname__:
        return None, f"{what} is an instance of a class defined inside a function"
    prefix = _prefix(cls.__module__, cls)
    if prefix is None:
        return None, f"{what} has no source file (defined interactively)"
    state = getattr(obj, "__dict__", None)
    try:
        plain = state is not None and json.loads(json.dumps(state)) == state
    except (TypeError, ValueError):
        plain = False
    if not plain:
        return None, f"{what} cannot be recorded: its attributes are not plain JSON data"
    try:
        rebuilt = cls(**state)
    except Exception as e:
        return None, (f"{what} cannot be recorded: {cls.__qualname__}(**its attributes) fails "
                      f"({type(e).__name__}: {e})")
    if getattr(rebuilt, "__dict__", None) != state:
        return None, f"{what} cannot be recorded: {cls.__qualname__}(**its attributes) builds another object"
    name = f"{prefix}:{cls.__qualname__}"
    return ({"name": name, "params": dict(state)} if state else name), ""


def _partial_spec(p: functools.partial) -> tuple[str | dict[str, Any] | None, str]:
    name = getattr(p.func, "__name__", type(p.func).__name__)
    if p.args or not inspect.isfunction(p.func):
        return None, f"reward functools.partial({name}, ...) binds positional arguments"
    ref, why = _function_ref(p.func)
    if ref is None:
        return None, why
    keyword_only = {q.name for q in inspect.signature(p.func).parameters.values()
                    if q.kind is inspect.Parameter.KEYWORD_ONLY}
    try:
        plain = json.loads(json.dumps(p.keywords)) == p.keywords
    except (TypeError, ValueError):
        plain = False
    if not plain or not set(p.keywords) <= keyword_only:
        return None, (f"reward functools.partial({name}, ...) binds arguments that are not keyword-only "
                      "parameters with plain JSON values")
    with _lock:
        _live[ref] = p.func
    return {"name": ref, "params": dict(p.keywords)}, ""


def _keep(fn: Callable[..., Any]) -> str:
    """A reference that resolves to ``fn`` in this process only, distinct from any other object's."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    try:
        source = inspect.getsourcefile(fn if inspect.isfunction(fn) else type(fn))
    except TypeError:
        source = None
    base = f"{Path(source).resolve() if source else '<memory>.py'}:{name}"
    ref, n = base, 1
    with _lock:
        while ref in _live and _live[ref] is not fn:
            n += 1
            ref = f"{base}~{n}"
        _live[ref] = fn
    return ref
