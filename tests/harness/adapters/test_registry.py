"""The adapter registry: names from entry points, conftest registrations, module:Class, mutants."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from presence_conformance.harness.adapter import Adapter, UsageError
from presence_conformance.harness.adapters import registry
from presence_conformance.harness.adapters.registry import (
    available_adapters,
    parse_options,
    register_adapter,
    resolve_adapter,
    unregister_adapter,
)

ADAPTERS_MODULE = '''
from presence_conformance.harness.adapter import Adapter


class GoodAdapter(Adapter):
    """A do-nothing adapter for registry tests."""

    name = "good"
    options = {"speed": "how fast", "url": "where"}

    async def connect(self, client_id, capability=None):
        raise NotImplementedError


class Outer:
    class Inner(GoodAdapter):
        """Nested."""


class NotAnAdapter:
    pass


class Abstract(Adapter):
    pass


def factory(options):
    return GoodAdapter(options)


def bad_factory(options):
    return "not an adapter"
'''


@pytest.fixture
def adapters_module(module_on_path: Callable[[str, str], str]) -> types.ModuleType:
    """A module `regtest_adapters` on sys.path with a few adapter classes."""
    module_on_path("regtest_adapters", ADAPTERS_MODULE)
    import regtest_adapters

    return regtest_adapters


@pytest.fixture(autouse=True)
def clean_registrations() -> Iterator[None]:
    saved = dict(registry._registered)
    yield
    registry._registered.clear()
    registry._registered.update(saved)


# -- parse_options -----------------------------------------------------------------------------


def test_parse_options() -> None:
    assert parse_options(["a=1", "url=ws://h:1/?x=y", "empty="]) == {
        "a": "1",
        "url": "ws://h:1/?x=y",
        "empty": "",
    }
    assert parse_options(["a=1", "a=2"]) == {"a": "2"}
    assert parse_options(None) == {}


@pytest.mark.parametrize("item", ["novalue", "=1", " =1"])
def test_parse_options_names_the_malformed_item(item: str) -> None:
    with pytest.raises(UsageError, match="KEY=VALUE") as err:
        parse_options(["ok=1", item])
    assert repr(item) in str(err.value)


# -- entry points --------------------------------------------------------------------------------


def test_reference_is_published_as_an_entry_point() -> None:
    names = [ep.name for ep in importlib.metadata.entry_points(group=registry.ENTRY_POINT_GROUP)]
    assert "reference" in names
    assert "reference" in available_adapters()


def test_entry_point_resolution(
    adapters_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    eps = [
        importlib.metadata.EntryPoint(
            "good", "regtest_adapters:GoodAdapter", registry.ENTRY_POINT_GROUP
        ),
        importlib.metadata.EntryPoint(
            "broken", "no_such_module_xyz:Thing", registry.ENTRY_POINT_GROUP
        ),
    ]
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    adapter = resolve_adapter("good", {"speed": "3"})
    assert isinstance(adapter, adapters_module.GoodAdapter)
    assert adapter.option_values == {"speed": "3"}
    listed = available_adapters()
    assert listed["good"] == "A do-nothing adapter for registry tests."
    assert "cannot load" in listed["broken"]  # a broken plugin is listed, not fatal
    with pytest.raises(UsageError, match=r"broken.*failed to load"):
        resolve_adapter("broken")


# -- unknown names and options -------------------------------------------------------------------


def test_unknown_adapter_lists_what_exists() -> None:
    register_adapter("mine", _concrete())
    with pytest.raises(UsageError) as err:
        resolve_adapter("nope", {})
    message = str(err.value)
    assert "unknown adapter 'nope'" in message
    assert "reference" in message and "mine" in message
    assert "module:Class" in message


def test_unknown_option_lists_accepted_options(adapters_module: types.ModuleType) -> None:
    with pytest.raises(UsageError) as err:
        resolve_adapter("regtest_adapters:GoodAdapter", {"sped": "1"})
    assert "sped" in str(err.value)
    assert "speed, url" in str(err.value)


# -- module:Class and file.py:Class --------------------------------------------------------------


def test_module_class(adapters_module: types.ModuleType) -> None:
    assert type(resolve_adapter("regtest_adapters:GoodAdapter")) is adapters_module.GoodAdapter
    assert type(resolve_adapter("regtest_adapters:Outer.Inner")) is adapters_module.Outer.Inner
    assert type(resolve_adapter("regtest_adapters:factory")) is adapters_module.GoodAdapter


@pytest.mark.parametrize(
    "target, message",
    [
        ("regtest_adapters:Missing", "has no attribute 'Missing'"),
        (
            "regtest_adapters:NotAnAdapter",
            "not a subclass of presence_conformance.harness.adapter.Adapter",
        ),
        ("regtest_adapters:Abstract", "is abstract; implement connect"),
        ("regtest_adapters:bad_factory", "returned str, not an Adapter"),
        ("no_such_module_xyz:Thing", "no module named 'no_such_module_xyz'"),
    ],
)
def test_module_class_errors(adapters_module: types.ModuleType, target: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_adapter(target)


def test_module_class_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A console script does not have the current directory on sys.path; the registry adds it.
    (tmp_path / "cwd_adapter_mod.py").write_text(ADAPTERS_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_adapter_mod", raising=False)
    assert type(resolve_adapter("cwd_adapter_mod:GoodAdapter")).__name__ == "GoodAdapter"
    assert str(tmp_path) not in sys.path  # and takes it away again


def test_file_path_class(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "my_adapter.py"
    path.parent.mkdir()
    path.write_text(ADAPTERS_MODULE)
    adapter = resolve_adapter(f"{path}:GoodAdapter", {"url": "x"})
    assert type(adapter).__name__ == "GoodAdapter"
    with pytest.raises(UsageError, match="no such file"):
        resolve_adapter(f"{tmp_path / 'missing.py'}:GoodAdapter")


# -- register_adapter (conftest.py) --------------------------------------------------------------


def test_register_adapter() -> None:
    cls = _concrete()
    register_adapter("mine", cls)
    register_adapter("mine", cls)  # the same class again (a conftest imported twice) is fine
    assert isinstance(resolve_adapter("mine"), cls)
    assert available_adapters()["mine"] == "Concrete test adapter."
    register_adapter("mine", _concrete())  # the same module and name: a re-imported conftest
    with pytest.raises(UsageError, match="already registered"):
        register_adapter("mine", "regtest_adapters:GoodAdapter")
    unregister_adapter("mine")
    with pytest.raises(UsageError, match="unknown adapter"):
        resolve_adapter("mine")


def test_register_adapter_by_module_class_string(adapters_module: types.ModuleType) -> None:
    register_adapter("lazy", "regtest_adapters:GoodAdapter")
    assert type(resolve_adapter("lazy")) is adapters_module.GoodAdapter
    assert available_adapters()["lazy"] == "A do-nothing adapter for registry tests."
    with pytest.raises(UsageError, match="module:Class"):
        register_adapter("lazy2", "regtest_adapters.GoodAdapter")


@pytest.mark.parametrize("name", ["", "a:b"])
def test_register_adapter_rejects_bad_names(name: str) -> None:
    with pytest.raises(UsageError):
        register_adapter(name, _concrete())


def test_registered_name_wins_over_entry_point() -> None:
    cls = _concrete()
    register_adapter("reference", cls)
    assert isinstance(resolve_adapter("reference"), cls)


# -- mutant:NAME ---------------------------------------------------------------------------------


def test_mutant_without_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_mutants_module", lambda: None)
    with pytest.raises(UsageError, match=r"harness\.mutants.*not installed"):
        resolve_adapter("mutant:get-ignores-client-id")


def test_mutant_from_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = _concrete()
    fake = types.ModuleType("presence_conformance.harness.mutants")

    def get_mutant(name: str) -> type[Adapter]:
        if name != "m1":
            raise KeyError(name)
        return cls

    fake.get_mutant = get_mutant  # type: ignore[attr-defined]
    fake.list_mutants = lambda: {"m1": "get ignores the clientId filter"}  # type: ignore[attr-defined]
    monkeypatch.setattr(registry, "_mutants_module", lambda: fake)
    assert isinstance(resolve_adapter("mutant:m1"), cls)
    assert available_adapters()["mutant:m1"] == "get ignores the clientId filter"
    with pytest.raises(UsageError, match="unknown mutant 'm2'; available mutants: m1"):
        resolve_adapter("mutant:m2")


def _concrete() -> type[Adapter]:
    class Concrete(Adapter):
        """Concrete test adapter."""

        name = "concrete"

        async def connect(self, client_id, capability=None):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    return Concrete
