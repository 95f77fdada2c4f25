"""The `generated/<profile>` test item that the pytest plugin collects with `--adapter`.

The plugin (`presence_conformance.harness.pytest_plugin`) calls two functions from here:

- `add_generation_options(group)` from `pytest_addoption`: `--generation-profile`,
  `--generation-examples`, `--generation-seed`, `--generation-failures-dir`, `--no-generation`,
  `--no-generation-server-steps`;
- `generated_items(session, conformance_session, strict)` from `pytest_collection_modifyitems`:
  one `GeneratedItem`, unless `--no-generation`.

The item runs `presence_conformance.harness.generation.run_generation` on the plugin's `ConformanceSession` (the same
adapter, on the same loop thread, as the scenario items), adds its `CaseResult` (kind
`generated`) to the session's run so the reports show it, and fails with the minimal program's
violations, the file it was saved to and the replay command. With Hypothesis' pytest plugin,
`--hypothesis-show-statistics` prints the run's statistics.

Importing this module imports only pytest: Hypothesis is loaded when the item runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

__all__ = ["GeneratedItem", "GenerationFailure", "add_generation_options", "generated_items"]

NODEID_PREFIX = "generated"
MARKER = "generated"


def add_generation_options(group: Any) -> None:
    """Add the generation options to the plugin's option group."""
    group.addoption(
        "--generation-profile",
        metavar="NAME",
        default="ci",
        help="profile of the generated test item generated/<profile>: ci "
        "(derandomized, 60 programs; the default), dev or thorough",
    )
    group.addoption(
        "--generation-examples",
        metavar="N",
        type=int,
        default=None,
        help="number of generated programs (default: the profile's)",
    )
    group.addoption(
        "--generation-seed",
        metavar="N",
        type=int,
        default=None,
        help="draw the generated programs from this seed (reproduces a run)",
    )
    group.addoption(
        "--generation-failures-dir",
        metavar="DIR",
        default="failures",
        help="where a minimal failing generated program is written (default failures/)",
    )
    group.addoption(
        "--generation-database",
        metavar="DIR|URL",
        default=None,
        help="Hypothesis example database of the generated item: a directory or "
        "redis://HOST:PORT/N, shared by the workers of a campaign (default: the profile's)",
    )
    group.addoption(
        "--no-generation-server-steps",
        action="store_true",
        default=False,
        help="generated programs draw no `server:` steps (by default they do when the adapter "
        "declares server-control)",
    )
    group.addoption(
        "--no-generation",
        action="store_true",
        default=False,
        help="do not collect the generated test item",
    )


class GenerationFailure(Exception):
    """The generated item found a failing program; carries the `GenerationResult`."""

    def __init__(self, result: Any) -> None:
        super().__init__(f"{result.case.case_id}: {result.case.outcome.value}")
        self.result = result


class GeneratedItem(pytest.Item):
    """Generated programs run against the session's adapter (see the module docstring)."""

    def __init__(self, *, conformance: Any, profile: str, strict: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conformance = conformance
        self.profile = profile
        self.strict = strict
        self.result: Any = None
        self.add_marker("conformance")
        self.add_marker(MARKER)

    def runtest(self) -> None:
        from presence_conformance.harness.generation import GenerationOptions, run_generation
        from presence_conformance.harness.generation.profiles import PROFILES

        config = self.config
        if self.profile not in PROFILES:
            raise pytest.UsageError(
                f"--generation-profile {self.profile!r}: unknown; choose one "
                f"of {', '.join(PROFILES)}"
            )
        examples = config.getoption("generation_examples")
        if examples is not None and examples < 1:
            raise pytest.UsageError(f"--generation-examples {examples}: must be at least 1")
        options = GenerationOptions(
            profile=self.profile,
            examples=examples,
            seed=config.getoption("generation_seed"),
            failures_dir=Path(config.getoption("generation_failures_dir")),
            database=config.getoption("generation_database"),
            strict=self.strict,
            statistics=True,
            server_steps=not config.getoption("no_generation_server_steps"),
        )
        result = self.result = run_generation(self.conformance, options)
        from presence_conformance.harness.pytest_plugin.hints import replay_hint

        hint = replay_hint(self.conformance, result.case.scenario_file)
        if hint is not None:  # a conftest adapter: the CLI cannot resolve its name
            result.case.replay = hint
            if result.failure is not None:
                result.failure.replay = hint
        self.conformance.add_results([result.case])
        if result.statistics:  # picked up by Hypothesis' --hypothesis-show-statistics
            self.hypothesis_statistics = result.statistics.replace(
                "presence-conformance generate:", f"{self.nodeid}:", 1
            )
        self.user_properties.append(("programs", str(result.programs)))
        case = result.case
        if result.failure is None and not case.outcome.is_failure:
            return
        from presence_conformance.harness.results import Outcome

        if case.known_failing:
            pytest.xfail(f"known failing: {case.outcome.value}")
        if case.outcome is Outcome.NON_STRICT and not self.strict:
            from presence_conformance.harness.session import describe_case

            warnings.warn(describe_case(case, history=False), stacklevel=1)
            return
        raise GenerationFailure(result)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | Any:
        if isinstance(excinfo.value, GenerationFailure):
            from presence_conformance.harness.session import describe_case

            result = excinfo.value.result
            lines = [describe_case(result.case)]
            failure = result.failure
            if failure is not None and failure.path is not None:
                lines.append(
                    f"minimal program ({failure.steps} step(s), shrunk from "
                    f"{failure.first_steps}) written to {failure.path}"
                )
                if failure.replay_confirmed is False:
                    lines.append("warning: replaying the file did not fail the same way")
            return "\n".join(lines)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"generated programs (profile {self.profile})"


def generated_items(
    session: pytest.Session, conformance: Any, strict: bool = False
) -> list[pytest.Item]:
    """The generated test item (none with `--no-generation`)."""
    config = session.config
    if config.getoption("no_generation", False):
        return []
    profile = config.getoption("generation_profile", "ci")
    config.addinivalue_line("markers", f"{MARKER}: generated presence programs (Hypothesis)")
    name = f"{NODEID_PREFIX}/{profile}"
    return [
        GeneratedItem.from_parent(
            session, name=name, nodeid=name, conformance=conformance, profile=profile, strict=strict
        )
    ]
