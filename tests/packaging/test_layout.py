"""pyproject.toml's `packages` list names every package folder of the checkout, and no other.

setuptools installs only the packages listed (with `package-dir` mapping the design card's
top-level folders under `presence_conformance`): a new subpackage left out of the list would be
missing from every wheel while the editable checkout still works.
"""

from __future__ import annotations

import tomllib

from packaging_support import ROOT


def package_folders(package_dir: dict[str, str]) -> set[str]:
    """Import names of the folders with an `__init__.py` under each mapped folder."""
    found: set[str] = set()
    for name, folder in package_dir.items():
        root = ROOT / folder
        for init in root.rglob("__init__.py"):
            if "node_modules" in init.parts:
                continue
            relative = init.parent.relative_to(root).parts
            found.add(".".join((name, *relative)))
    return found


def test_packages_list_names_every_package_folder() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = config["package-dir"]
    listed = set(config["packages"])
    assert len(listed) == len(config["packages"])  # no duplicates
    on_disk = package_folders(package_dir)
    assert on_disk - listed == set(), "package folders missing from pyproject.toml's packages"
    assert listed - on_disk == set(), "packages listed without a folder and __init__.py"


def test_a_package_folder_left_out_is_found() -> None:
    """The comparison sees a folder that the list does not name."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"]) - {"presence_conformance.harness.run"}
    assert package_folders(config["package-dir"]) - listed == {"presence_conformance.harness.run"}
