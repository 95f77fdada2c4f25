"""The built wheel installs one import name, `presence_conformance`, and works from a fresh venv.

Run from another folder than the checkout: the generic names the folders had before
(`harness`, `spec`, `scenarios`, `reference_impl`) are not importable, the CLI lists the
catalogue and runs the suite against the reference, and the ably-js adapter's node files come
with the package.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from packaging_support import Installed, run


def test_wheel_holds_only_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"presence_conformance", "presence_conformance-0.1.0.dist-info"}
    for expected in (
        "presence_conformance/__init__.py",
        "presence_conformance/py.typed",
        "presence_conformance/harness/run/driver.py",
        "presence_conformance/spec/requirements.yaml",
        "presence_conformance/scenarios/enter/adds-member.yaml",
        "presence_conformance/harness/adapters/ably_js_node/ably_bridge.mjs",
        "presence_conformance/harness/adapters/ably_js_node/package-lock.json",
    ):
        assert expected in names
    assert not [n for n in names if "node_modules" in n or "__pycache__" in n]
    entry_points = zipfile.ZipFile(wheel).read(
        "presence_conformance-0.1.0.dist-info/entry_points.txt"
    )
    assert b"presence-conformance = presence_conformance.harness.cli:main" in entry_points


@pytest.mark.parametrize("name", ["harness", "spec", "scenarios", "reference_impl"])
def test_generic_names_are_not_importable(installed: Installed, tmp_path: Path, name: str) -> None:
    result = run([installed.python, "-c", f"import {name}"], tmp_path)
    assert result.returncode != 0
    assert f"No module named '{name}'" in result.stderr


def test_the_package_comes_from_the_venv(installed: Installed, tmp_path: Path) -> None:
    code = (
        "import presence_conformance, presence_conformance.harness.cli as cli, json; "
        "from presence_conformance import Adapter, PresenceMessage; "
        "print(json.dumps([presence_conformance.__file__, cli.__file__]))"
    )
    result = run([installed.python, "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    for path in json.loads(result.stdout):
        assert Path(path).is_relative_to(installed.site_packages)


def test_cli_lists_the_catalogue(installed: Installed, tmp_path: Path) -> None:
    result = run([installed.bin("presence-conformance"), "list", "requirements"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["REQUIREMENT", "LEVEL", "TEXT"]
    assert "enter.adds-member" in result.stdout


def test_cli_runs_the_suite_against_the_reference(installed: Installed, tmp_path: Path) -> None:
    result = run(
        [installed.bin("presence-conformance"), "run", "--adapter", "reference",
         "--select", "enter/*", "--report-dir", "out"],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("CONFORMING")
    cases = json.loads((tmp_path / "out" / "results.json").read_text())["cases"]
    assert cases and all(c["case_id"].startswith("enter/") for c in cases)


def test_ably_js_node_files_come_with_the_package(installed: Installed, tmp_path: Path) -> None:
    """The one step before `npm ci`: copy the packaged node files to a folder of one's choice."""
    module = "presence_conformance.harness.adapters.ably_js"
    result = run([installed.python, "-m", module, "chosen"], tmp_path)
    assert result.returncode == 0, result.stderr
    packaged = installed.site_packages / "presence_conformance/harness/adapters/ably_js_node"
    copied = sorted(p.name for p in (tmp_path / "chosen").iterdir())
    assert copied == ["ably_bridge.mjs", "package-lock.json", "package.json", "sdk_smoke.mjs"]
    for name in copied:
        assert (tmp_path / "chosen" / name).read_bytes() == (packaged / name).read_bytes()
    assert "npm ci" in result.stdout
    # before npm ci the adapter says what to run
    result = run(
        [installed.bin("presence-conformance"), "run", "--adapter", "ably-js",
         "--adapter-option", "node_dir=chosen", "--report-dir", "out"],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "run npm ci in chosen" in result.stderr
