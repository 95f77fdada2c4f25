"""The layering contract bites, and the package has no import cycles.

Both work on a copy of the tree the wheel installed (import-linter and grimp need a real
package folder, which the editable install's `package-dir` mapping does not give them). The
contract is the project's own: `[tool.importlinter]` in pyproject.toml, which `.ci/run` checks
with `lint-imports` through scripts/check-code.
"""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from packaging_support import ROOT, Installed, run

CONTRACTS = [c["name"] for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
    "importlinter"]["contracts"]]  # fmt: skip
LAYERS = CONTRACTS[0]  # the package-wide layers; the others order modules inside a package
FORBIDDEN = next(c for c in CONTRACTS if "never imports the harness" in c)
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture
def tree(installed: Installed, tmp_path: Path) -> Path:
    """A copy of the installed `presence_conformance` folder; returns the folder holding it."""
    shutil.copytree(
        installed.site_packages / "presence_conformance",
        tmp_path / "presence_conformance",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def plant(tree: Path, module: str, statement: str) -> None:
    """Append a module-level import to `module` (a dotted name) of the copied tree."""
    path = tree.joinpath(*module.split(".")).with_suffix(".py")
    assert path.is_file(), path
    path.write_text(path.read_text() + f"\n{statement}  # planted by the test\n")


def lint_imports(tree: Path) -> tuple[int, str]:
    """Run `lint-imports` with the project's contracts on `tree`: (exit code, output with its
    line wrapping undone)."""
    result = run(
        [LINT_IMPORTS, ROOT / "pyproject.toml", "--no-cache", "--no-logo"],
        tree,
        PYTHONPATH=str(tree),
    )
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_the_installed_tree_keeps_the_contracts(tree: Path) -> None:
    code, output = lint_imports(tree)
    assert code == 0, output
    assert f"{LAYERS} KEPT" in output and f"{FORBIDDEN} KEPT" in output


def test_an_upward_import_breaks_the_layers(tree: Path) -> None:
    """The record layer importing the run layer above it."""
    plant(
        tree,
        "presence_conformance.harness.record.records",
        "import presence_conformance.harness.run",
    )
    code, output = lint_imports(tree)
    assert code != 0
    assert f"{LAYERS} BROKEN" in output
    assert (
        "presence_conformance.harness.record is not allowed to import "
        "presence_conformance.harness.run" in output
    )
    assert (
        "presence_conformance.harness.record.records -> presence_conformance.harness.run" in output
    )


def test_the_reference_implementation_importing_the_harness_breaks_both(tree: Path) -> None:
    plant(
        tree,
        "presence_conformance.reference_impl.model",
        "import presence_conformance.harness.session",
    )
    code, output = lint_imports(tree)
    assert code != 0
    assert f"{LAYERS} BROKEN" in output and f"{FORBIDDEN} BROKEN" in output
    assert (
        "presence_conformance.reference_impl.model -> presence_conformance.harness.session"
        in output
    )


# -- cycles ----------------------------------------------------------------------------------------

FIND_CYCLES = """
import importlib.util, json, sys
import grimp

graph = grimp.build_graph("presence_conformance", exclude_type_checking_imports=False, cache_dir=None)
sys.setrecursionlimit(10_000)
index, low, stack, on_stack, cycles = {}, {}, [], set(), []

def visit(module):  # Tarjan: strongly connected components of the import graph
    index[module] = low[module] = len(index)
    stack.append(module)
    on_stack.add(module)
    for imported in sorted(graph.find_modules_directly_imported_by(module)):
        if imported not in index:
            visit(imported)
            low[module] = min(low[module], low[imported])
        elif imported in on_stack:
            low[module] = min(low[module], index[imported])
    if low[module] == index[module]:
        component = []
        while True:
            member = stack.pop()
            on_stack.discard(member)
            component.append(member)
            if member == module:
                break
        if len(component) > 1 or module in graph.find_modules_directly_imported_by(module):
            cycles.append(sorted(component))

for module in sorted(graph.modules):
    if module not in index:
        visit(module)
print(json.dumps({
    "origin": importlib.util.find_spec("presence_conformance").origin,
    "modules": sorted(graph.modules),
    "cycles": cycles,
}))
"""


def find_cycles(tree: Path) -> dict:
    """The import graph of the tree (imports under `if TYPE_CHECKING:` included: a cycle hidden
    from the interpreter is still a cycle in the design) and its cycles, each as the set of
    modules that import one another."""
    result = run([sys.executable, "-c", FIND_CYCLES], tree, PYTHONPATH=str(tree))
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    assert Path(found["origin"]).is_relative_to(tree)  # the copy, not the checkout
    return found


def test_no_import_cycles(tree: Path) -> None:
    found = find_cycles(tree)
    assert "presence_conformance.harness.run.driver" in found["modules"]
    assert len(found["modules"]) > 80
    assert found["cycles"] == []


def test_a_planted_cycle_is_found(tree: Path) -> None:
    """errors imports analysis; analysis importing errors back closes a cycle."""
    plant(
        tree,
        "presence_conformance.harness.checks.analysis",
        "import presence_conformance.harness.checks.errors",
    )
    assert find_cycles(tree)["cycles"] == [
        [
            "presence_conformance.harness.checks.analysis",
            "presence_conformance.harness.checks.errors",
        ]
    ]
