"""Finding adapters by name.

An `--adapter NAME` is resolved, in this order:

1. `mutant:NAME`: a deliberately broken implementation from `presence_conformance.harness.mutants`;
2. a name registered at run time with `register_adapter(name, cls)` (typically from a
   `conftest.py`) or returned by the pytest hook `pytest_presence_conformance_adapters`;
3. a name published by an installed package in the entry-point group
   `presence_conformance.adapters` (`reference` ships with the harness);
4. `module:Class` (or `path/to/file.py:Class`): imported directly, the current directory
   first on the import path. A file's own folder goes first on `sys.path` (and stays there), so
   `./pkg/adapter.py:Class` can `import helpers` from `./pkg/helpers.py`.

Outside pytest, `load_conftest(path)` imports a conftest.py so that the names it registers
(`register_adapter` at import, or the hook `pytest_presence_conformance_adapters`) resolve too:
`presence-conformance replay FILE --conftest conftest.py --adapter mine`.

Every user mistake raises `UsageError` with the way out spelled out: an unknown name lists the
adapters that exist, an unknown option lists the options the adapter accepts.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from presence_conformance.harness.adapter import Adapter, UsageError

__all__ = [
    "ENTRY_POINT_GROUP",
    "MUTANT_PREFIX",
    "AdapterFactory",
    "adapter_factory",
    "available_adapters",
    "is_registered",
    "load_conftest",
    "parse_options",
    "register_adapter",
    "resolve_adapter",
    "unregister_adapter",
]

ENTRY_POINT_GROUP = "presence_conformance.adapters"
MUTANT_PREFIX = "mutant:"

AdapterFactory = type[Adapter] | Callable[[dict[str, str]], Adapter]
"""An `Adapter` subclass, or any callable that takes the options dict and returns an adapter."""

_registered: dict[str, AdapterFactory | str] = {}


def register_adapter(name: str, factory: AdapterFactory | str) -> None:
    """Make `factory` available as `--adapter name` (in-process only; call it from conftest.py).

    `factory` is an `Adapter` subclass, a callable `(options) -> Adapter`, or a `"module:Class"`
    string imported when the adapter is first used. Registering the same name for a different
    target is a mistake and raises `UsageError`; registering the same target again (a conftest
    imported twice) replaces the registration.
    """
    if not name or ":" in name:
        raise UsageError(f"adapter name {name!r}: must be non-empty and contain no ':'")
    if isinstance(factory, str):
        if ":" not in factory:
            raise UsageError(f"adapter {name!r}: {factory!r} is not of the form module:Class")
    elif not callable(factory):
        raise UsageError(f"adapter {name!r}: {factory!r} is not an Adapter class or factory")
    previous = _registered.get(name)
    # The same target again is fine: a conftest imported twice, or re-imported by a second
    # in-process pytest session (a new class object with the same module and name).
    if previous is not None and _describe_target(previous) != _describe_target(factory):
        raise UsageError(f"adapter {name!r} is already registered as {_describe_target(previous)}")
    _registered[name] = factory


def unregister_adapter(name: str) -> None:
    """Forget a name registered with `register_adapter` (no error if it was not registered)."""
    _registered.pop(name, None)


def is_registered(name: str) -> bool:
    """True when `name` was registered in this process (`register_adapter`, a conftest.py): a
    name that a fresh `presence-conformance` process cannot resolve on its own."""
    return name in _registered


def load_conftest(path: str | Path) -> list[str]:
    """Import the conftest.py at `path` and register the adapters it provides; return their
    names.

    Names registered with `register_adapter` at import time count, and so do those returned by
    a `pytest_presence_conformance_adapters(config)` hook in the file (called with
    `config=None`: outside pytest there is no configuration). UsageError if the file cannot be
    imported or the hook fails.
    """
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / "conftest.py"
    before = set(_registered)
    module = _import_file(f"--conftest {path}", file)
    hook = getattr(module, "pytest_presence_conformance_adapters", None)
    if callable(hook):
        try:
            provided = hook(config=None) or {}
        except Exception as exc:
            raise UsageError(
                f"--conftest {path}: pytest_presence_conformance_adapters(config=None) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for adapter_name, factory in dict(provided).items():
            register_adapter(adapter_name, factory)
    return sorted(set(_registered) - before) or sorted(
        name for name, f in _registered.items() if getattr(f, "__module__", None) == module.__name__
    )


def parse_options(items: Iterable[str] | None) -> dict[str, str]:
    """Parse `--adapter-option KEY=VALUE` items into a dict (a later KEY wins).

    >>> parse_options(["leave_grace=0.1", "url=ws://h:1/?a=b"])
    {'leave_grace': '0.1', 'url': 'ws://h:1/?a=b'}
    """
    options: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--adapter-option {item!r}: expected KEY=VALUE, e.g. leave_grace=0.5")
        options[key] = value
    return options


def available_adapters() -> dict[str, str]:
    """Every adapter name that `resolve_adapter` accepts, with a one-line description.

    Entry points that fail to load are listed with the error instead of a description.
    Mutants appear as `mutant:NAME` when `presence_conformance.harness.mutants` is installed.
    """
    out: dict[str, str] = {}
    for ep in _entry_points():
        try:
            out[ep.name] = _description(ep.load())
        except Exception as exc:  # a broken third-party package must not hide the others
            out[ep.name] = f"(cannot load {ep.value}: {type(exc).__name__}: {exc})"
    for name, factory in _registered.items():
        if isinstance(factory, str):
            try:
                out[name] = _description(_import_target(factory))
            except UsageError as exc:
                out[name] = f"(cannot load {factory}: {exc})"
        else:
            out[name] = _description(factory)
    for name, description in _mutants().items():
        out[MUTANT_PREFIX + name] = description
    return dict(sorted(out.items()))


def adapter_factory(name: str) -> AdapterFactory:
    """The class or factory `name` refers to (see the module docstring for the lookup order)."""
    name = name.strip()
    if not name:
        raise UsageError("--adapter: empty adapter name" + _known_suffix())
    if name.startswith(MUTANT_PREFIX):
        return _mutant_factory(name[len(MUTANT_PREFIX) :])
    if name in _registered:
        registered = _registered[name]
        return _import_target(registered) if isinstance(registered, str) else registered
    for ep in _entry_points():
        if ep.name == name:
            try:
                return _check_factory(ep.load(), f"entry point {name!r} ({ep.value})")
            except UsageError:
                raise
            except Exception as exc:
                raise UsageError(
                    f"adapter {name!r}: entry point {ep.value} failed to load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    if ":" in name:
        return _import_target(name)
    raise UsageError(f"unknown adapter {name!r}" + _known_suffix())


def resolve_adapter(name: str, options: Mapping[str, str] | None = None) -> Adapter:
    """Create the adapter `name` with `options` (not started yet: the caller awaits `start()`).

    Raises `UsageError` for an unknown name, an unknown option (the message lists the options
    accepted) or a value the adapter refuses.
    """
    factory = adapter_factory(name)
    options = dict(options or {})
    try:
        adapter = factory(options)
    except UsageError:
        raise
    except (TypeError, ValueError) as exc:
        raise UsageError(f"adapter {name!r}: {exc}") from exc
    if not isinstance(adapter, Adapter):
        raise UsageError(
            f"adapter {name!r}: {_describe_target(factory)} returned "
            f"{type(adapter).__name__}, not an Adapter"
        )
    return adapter


# -- helpers -------------------------------------------------------------------------------------


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: set[str] = set()
    out = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in seen:  # the same distribution on sys.path twice
            seen.add(ep.name)
            out.append(ep)
    return out


def _known_suffix() -> str:
    names = ", ".join(available_adapters()) or "none"
    return (
        f"; available adapters: {names} (or module:Class, path/to/file.py:Class, "
        f"{MUTANT_PREFIX}NAME; see `presence-conformance list adapters`)"
    )


def _description(factory: Any) -> str:
    doc = inspect.getdoc(factory) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    return first or _describe_target(factory)


def _describe_target(factory: Any) -> str:
    if isinstance(factory, str):
        return factory
    module = getattr(factory, "__module__", "?")
    qualname = getattr(factory, "__qualname__", repr(factory))
    return f"{module}:{qualname}"


def _check_factory(obj: Any, where: str) -> AdapterFactory:
    if inspect.isclass(obj):
        if not issubclass(obj, Adapter):
            raise UsageError(
                f"{where}: {_describe_target(obj)} is not a subclass of "
                "presence_conformance.harness.adapter.Adapter"
            )
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
            raise UsageError(f"{where}: {_describe_target(obj)} is abstract; implement {missing}")
        return obj
    if callable(obj):
        return obj
    raise UsageError(f"{where}: {obj!r} is not an Adapter class or factory")


def _import_target(spec: str) -> AdapterFactory:
    """`pkg.module:Class`, `pkg.module:Outer.Inner` or `path/to/file.py:Class`."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise UsageError(f"adapter {spec!r}: expected module:Class" + _known_suffix())
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        module = _import_file(spec, Path(module_name))
    else:
        module = _import_module(spec, module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(
                f"adapter {spec!r}: module {module.__name__} has no attribute {attr!r}"
            ) from None
    return _check_factory(obj, f"adapter {spec!r}")


def _import_module(spec: str, module_name: str) -> Any:
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:  # a console script does not have the current directory on sys.path
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(
                f"adapter {spec!r}: no module named {exc.name!r} (looked in the "
                f"current directory and sys.path)" + _known_suffix()
            ) from exc
        raise UsageError(f"adapter {spec!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        raise UsageError(
            f"adapter {spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if added:
            sys.path.remove(cwd)


def _import_file(spec: str, path: Path) -> Any:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"adapter {spec!r}: no such file {path}")
    module_name = f"_presence_adapter_{path.stem}_{abs(hash(str(path))):x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    folder = str(path.parent)
    if folder not in sys.path:  # its sibling modules import by name; later imports need it too
        sys.path.insert(0, folder)
    file_spec = importlib.util.spec_from_file_location(module_name, path)
    if file_spec is None or file_spec.loader is None:
        raise UsageError(f"adapter {spec!r}: cannot import {path}")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[module_name] = module
    try:
        file_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise UsageError(
            f"adapter {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _mutants_module() -> Any | None:
    try:
        return importlib.import_module("presence_conformance.harness.mutants")
    except ModuleNotFoundError as exc:
        if exc.name in (
            "presence_conformance.harness.mutants",
            "presence_conformance.harness",
            "presence_conformance",
        ):
            return None
        raise


def _mutants() -> dict[str, str]:
    """Mutant name -> description, from `presence_conformance.harness.mutants.list_mutants()` when it exists."""
    module = _mutants_module()
    lister = getattr(module, "list_mutants", None) if module else None
    if lister is None:
        return {}
    listed = lister()
    if isinstance(listed, Mapping):
        return {str(k): _as_description(v) for k, v in listed.items()}
    return {str(name): "" for name in listed}


def _as_description(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _description(value)


def _mutant_factory(mutant: str) -> AdapterFactory:
    module = _mutants_module()
    if module is None or not hasattr(module, "get_mutant"):
        raise UsageError(
            f"adapter {MUTANT_PREFIX}{mutant}: the mutant catalogue "
            "(presence_conformance.harness.mutants) is not installed"
        )
    try:
        obj = module.get_mutant(mutant)
    except UsageError:
        raise
    except (KeyError, LookupError, ValueError) as exc:
        names = ", ".join(_mutants()) or "none"
        raise UsageError(f"unknown mutant {mutant!r}; available mutants: {names}") from exc
    if isinstance(obj, Adapter):  # a ready instance: options cannot be applied to it

        def factory(options: dict[str, str]) -> Adapter:
            if options:
                raise UsageError(f"adapter {MUTANT_PREFIX}{mutant}: takes no options")
            return obj

        return factory
    return _check_factory(obj, f"adapter {MUTANT_PREFIX}{mutant}")
