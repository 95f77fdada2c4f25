"""Generation: programs are ordinary scenarios, profiles behave as documented, a seed reproduces
a run, a failure is shrunk, written as a scenario file that replays to the same failure, and
the CLI and the pytest item report it."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase
from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.adapters.reference import ReferenceAdapter, ReferenceConnection
from presence_conformance.harness.cli.generate import generate_main
from presence_conformance.harness.generation import (
    PROFILES,
    GenerationConfig,
    GenerationOptions,
    compile_program,
    hypothesis_settings,
    member_data,
    profile,
    programs,
    run_generation,
)
from presence_conformance.harness.generation.profiles import CI_SEED, NamespacedDatabase
from presence_conformance.harness.generation.strategies import program_steps
from presence_conformance.harness.mutant_detection import ADAPTER_OPTIONS, DETECTION_SETTINGS
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.scenario import (
    load_scenario,
    scenario_from_dict,
    scenario_to_yaml,
)
from presence_conformance.harness.scenario.yaml_source import load_yaml
from presence_conformance.harness.session import ConformanceSession
from sample_project import SCENARIOS
from support import write_files

pytest_plugins = ["pytester"]

QUICK = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
# a mutant the ci profile finds within its first programs, and the requirement it breaks
FAST_MUTANT, FAST_REQUIREMENT = "get-action-not-present", "get.action-present"


def session_for(adapter: Any, name: str = "reference") -> ConformanceSession:
    return ConformanceSession(
        adapter, adapter_name=name, options=dict(ADAPTER_OPTIONS), settings=DETECTION_SETTINGS
    )


def reference() -> ReferenceAdapter:
    return ReferenceAdapter(dict(ADAPTER_OPTIONS))


def mutant(name: str) -> ConformanceSession:
    return session_for(get_mutant(name)(dict(ADAPTER_OPTIONS)), f"mutant:{name}")


def run(session: ConformanceSession, on_program: Any = None, **options: Any) -> Any:
    options.setdefault("failures_dir", None)
    options.setdefault("use_database", False)
    try:
        return run_generation(session, GenerationOptions(**options), on_program=on_program)
    finally:
        session.stop()


# -- programs are ordinary scenario documents ------------------------------------------------------


@QUICK
@given(programs())
def test_every_program_is_a_valid_scenario_that_round_trips_through_yaml(doc: dict) -> None:
    scenario = scenario_from_dict(doc, case_id="generated/test")
    back = scenario_from_dict(load_yaml(scenario_to_yaml(doc))[0], case_id="generated/test")
    assert back.to_dict() == scenario.to_dict()
    assert 1 <= len(scenario.steps)
    for step in scenario.iter_steps():
        if step.kind == "concurrently":
            raise AssertionError("nested block")


@QUICK
@given(member_data())
def test_member_data_never_looks_like_binary_json(data: Any) -> None:
    if isinstance(data, dict):
        assert not any(str(key).startswith("$") for key in data)


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(programs(GenerationConfig(features=frozenset({Feature.MULTIPLE_CONNECTIONS}))))
def test_programs_only_use_the_features_the_adapter_has(doc: dict) -> None:
    scenario = scenario_from_dict(doc, case_id="generated/test")
    assert scenario.needed_features() <= {Feature.MULTIPLE_CONNECTIONS}


def test_programs_cover_every_operation_and_argument_form() -> None:
    seen: set[str] = set()

    def forms(step: dict) -> set[str]:
        ((kind, body),) = step.items()
        if kind == "concurrently":
            return {"concurrently"} | {f for inner in body for f in forms(inner)}
        out = {kind} | {f"{kind}.{key}" for key in body if key not in ("client", "channel")}
        if isinstance(body.get("actions"), list):
            out.add(f"{kind}.actions-list")
        data = body.get("data", "absent")
        out.add(f"data.{type(data).__name__}")
        return out

    @settings(  # derandomized: a coverage statement about the generator, not a random sample
        max_examples=400,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(programs())
    def collect(doc: dict) -> None:
        for step in doc["steps"]:
            seen.update(forms(step))
        seen.update(f"client.{k}" for spec in doc["clients"].values() for k in spec)

    collect()
    wanted = {
        "enter",
        "update",
        "leave",
        "get",
        "subscribe",
        "unsubscribe",
        "history",
        "sync_complete",
        "concurrently",
        "drop",
        "close",
        "connect",
        "get.client_id",
        "get.connection_id",
        "get.wait_for_sync",
        "subscribe.actions",
        "subscribe.actions-list",
        "subscribe.expect_error",
        "unsubscribe.listener",
        "unsubscribe.actions",
        "unsubscribe.expect_error",
        "history.start",
        "history.end",
        "history.limit",
        "history.direction",
        "history.pages",
        "history.expect_error",
        "enter.expect_error",
        "data.str",
        "data.dict",
        "data.list",
        "data.bytes",
        "data.NoneType",
        "client.client_id",
        "client.connect",
        "client.capability",
    }
    assert wanted <= seen, sorted(wanted - seen)


def test_compiling_is_deterministic_and_skips_what_cannot_run() -> None:
    @settings(
        max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(program_steps(GenerationConfig()))
    def same(drawn: tuple) -> None:
        assert compile_program(*drawn) == compile_program(*drawn)

    same()
    from presence_conformance.harness.generation.strategies import _Client

    alice = _Client("alice", "alice", "plain")
    doc = compile_program(
        [alice], 1, [{"kind": "drop", "who": 0, "chan": 0}, {"kind": "enter", "who": 0, "chan": 0}]
    )
    # after the only client dropped, the next step brings it back instead of acting alone
    assert doc["steps"] == [{"drop": {"client": "alice"}}, {"connect": {"client": "alice"}}]


# -- profiles and seeds ---------------------------------------------------------------------------


def test_profiles() -> None:
    assert set(PROFILES) == {"ci", "dev", "thorough"}
    ci, ci_seed = hypothesis_settings(profile("ci"))
    assert ci.derandomize and ci.max_examples == 60 and ci.deadline is None
    assert ci.database is None and ci_seed is None
    dev, _ = hypothesis_settings(profile("dev"), namespace="x", database="/tmp/x-db")
    assert not dev.derandomize and isinstance(dev.database, NamespacedDatabase)
    assert isinstance(dev.database.inner, DirectoryBasedExampleDatabase)
    thorough, _ = hypothesis_settings(profile("thorough"), use_database=False)
    assert thorough.max_examples >= 1000 and thorough.database is None
    assert profile("thorough").max_steps > profile("ci").max_steps
    assert profile("ci", 7).max_examples == 7
    with pytest.raises(ValueError, match="unknown generation profile"):
        profile("nightly")
    with pytest.raises(ValueError, match="positive"):
        profile("ci", 0)


def test_ci_with_a_database_replays_it_read_only_from_a_fixed_seed(tmp_path: Path) -> None:
    ci, seed = hypothesis_settings(profile("ci"), database=tmp_path)
    assert not ci.derandomize and seed == CI_SEED
    assert isinstance(ci.database, NamespacedDatabase)
    assert isinstance(ci.database.inner, ReadOnlyDatabase)


def test_namespaced_database_keeps_adapters_apart(tmp_path: Path) -> None:
    inner = DirectoryBasedExampleDatabase(str(tmp_path))
    a, b = NamespacedDatabase(inner, "a"), NamespacedDatabase(inner, "b")
    a.save(b"key", b"value")
    assert list(a.fetch(b"key")) == [b"value"] and list(b.fetch(b"key")) == []
    a.move(b"key", b"other", b"value")
    assert list(a.fetch(b"other")) == [b"value"]
    a.delete(b"other", b"value")
    assert list(a.fetch(b"other")) == []


def programs_of(**options: Any) -> list[str]:
    docs: list[str] = []
    run(
        session_for(reference()),
        on_program=lambda n, doc, case: docs.append(scenario_to_yaml(doc)),
        **options,
    )
    return docs


def test_a_seed_reproduces_a_run_and_ci_is_derandomized() -> None:
    first = programs_of(profile="dev", examples=12, seed=7)
    assert len(first) == 12
    assert programs_of(profile="dev", examples=12, seed=7) == first
    assert programs_of(profile="dev", examples=12, seed=8) != first
    assert programs_of(profile="ci", examples=10) == programs_of(profile="ci", examples=10)


def test_the_reference_passes_a_dev_run() -> None:
    result = run(session_for(reference()), profile="dev", examples=40, seed=3, strict=True)
    assert result.programs == 40 and result.failure is None
    assert result.case.outcome is Outcome.PASS and result.case.kind == "generated"
    assert result.case.case_id == "generated/dev"


class _Recording(ReferenceAdapter):
    """The reference, noting the loop each connection is opened on and the channels used."""

    loops: ClassVar[set[int]] = set()
    channels: ClassVar[list[str]] = []

    async def connect(self, client_id: str | None, capability: Any = None) -> Any:
        self.loops.add(id(asyncio.get_running_loop()))
        return await super().connect(client_id, capability)

    class Connection(ReferenceConnection):
        def channel(self, name: str) -> Any:
            _Recording.channels.append(name)
            return super().channel(name)

    connection_class = Connection


def test_one_event_loop_and_fresh_channel_names_per_program() -> None:
    per_program: list[set[str]] = []

    def note(number: int, doc: dict, case: Any) -> None:
        per_program.append(set(_Recording.channels))
        _Recording.channels.clear()

    run(
        session_for(_Recording(dict(ADAPTER_OPTIONS))),
        profile="dev",
        examples=25,
        seed=11,
        on_program=note,
    )
    assert len(_Recording.loops) == 1
    used = [names for names in per_program if names]
    assert used and all(not (a & b) for i, a in enumerate(used) for b in used[i + 1 :])


class _NoExtras(ReferenceAdapter):
    """The reference declaring only enter/get/subscribe-level features."""

    features = frozenset({Feature.MULTIPLE_CONNECTIONS})


def test_an_adapter_with_few_features_gets_no_unsupported_programs() -> None:
    result = run(session_for(_NoExtras(dict(ADAPTER_OPTIONS))), profile="ci", examples=30)
    assert result.outcomes == {"pass": 30}


# -- failures: shrunk, saved, replayed ------------------------------------------------------------


def test_a_failure_is_shrunk_saved_and_replays_to_the_same_failure(tmp_path: Path) -> None:
    result = run(
        mutant(FAST_MUTANT), profile="ci", failures_dir=tmp_path, strict=True, statistics=True
    )
    failure = result.failure
    assert failure is not None and failure.path is not None and failure.path.parent == tmp_path
    assert failure.steps <= failure.first_steps and failure.steps <= 8
    assert FAST_REQUIREMENT in failure.requirements
    assert failure.replay_confirmed is True
    assert failure.replay == (
        f"presence-conformance replay {failure.path} --adapter "
        f"mutant:{FAST_MUTANT} --adapter-option leave_grace=0.02"
    )
    case = result.case
    assert case.kind == "generated" and case.outcome is Outcome.FAIL
    assert case.scenario_file == str(failure.path) and case.replay == failure.replay
    assert FAST_REQUIREMENT in case.requirements and case.violations and case.history
    # Hypothesis words its statistics differently across versions ("3 passing examples" /
    # "3 passing, 0 failing"; "shrink phase" / "Tried 11 shrinks"): check the substance.
    assert re.search(r"\d+ passing", result.statistics) and "shrink" in result.statistics

    saved = load_scenario(failure.path)  # an ordinary scenario file
    assert FAST_REQUIREMENT in saved.requirements
    assert saved.meta["adapter"] == f"mutant:{FAST_MUTANT}" and saved.meta["profile"] == "ci"
    assert len(saved.steps) == failure.steps
    # deterministic: the file fails the same way every time, and the reference passes it
    for _ in range(3):
        again = mutant(FAST_MUTANT)
        try:
            case = again.run_case(saved)
        finally:
            again.stop()
        assert case.outcome is Outcome.FAIL
        assert sorted({v.requirement for v in case.violations}) == failure.requirements
    fixed = session_for(reference())
    try:
        assert fixed.run_case(saved).outcome is Outcome.PASS
    finally:
        fixed.stop()


def test_the_example_database_tries_a_known_failure_first(tmp_path: Path) -> None:
    options = {
        "profile": "dev",
        "seed": 5,
        "database": tmp_path / "db",
        "use_database": True,
        "shrink": True,
        "strict": True,
        "failures_dir": None,
    }
    first = run(mutant("update-as-enter"), **options)
    assert first.failure is not None
    again = run(mutant("update-as-enter"), **{**options, "seed": 99})
    assert again.programs_to_first_failure == 1
    other = run(session_for(reference()), **{**options, "examples": 5})
    assert other.failure is None  # another adapter's namespace: nothing replayed as failing


def test_a_broken_adapter_is_an_error_result_not_a_crash() -> None:
    class Broken(ReferenceAdapter):
        async def start(self) -> None:
            raise RuntimeError("no server")

    result = run(session_for(Broken(dict(ADAPTER_OPTIONS))), profile="ci", examples=3)
    assert result.case.outcome is Outcome.ERROR and "no server" in result.case.error
    assert result.failure is None and result.programs == 0


# -- the command line ------------------------------------------------------------------------------


def test_cli_generate_finds_saves_and_prints_the_replay_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = generate_main(
        [
            "--adapter",
            f"mutant:{FAST_MUTANT}",
            "--adapter-option",
            "leave_grace=0.02",
            "--failures-dir",
            str(tmp_path / "failures"),
            "--op-timeout",
            "1",
            "--statistics",
            "--report-dir",
            str(tmp_path / "reports"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "FAILED" in out and "shrinking it" in out
    files = list((tmp_path / "failures").glob("*.yaml"))
    assert len(files) == 1
    assert (
        f"presence-conformance replay {files[0]} --adapter mutant:{FAST_MUTANT} "
        "--adapter-option leave_grace=0.02"
    ) in out
    assert "Stopped because" in out  # --statistics
    results = json.loads((tmp_path / "reports" / "results.json").read_text())
    cases = [c for c in results["cases"] if c["kind"] == "generated"]
    assert [c["case_id"] for c in cases] == ["generated/ci"] and cases[0]["outcome"] == "fail"

    from presence_conformance.harness.cli import main

    assert (
        main(["replay", str(files[0]), "--adapter", f"mutant:{FAST_MUTANT}", "--op-timeout", "1"])
        == 1
    )
    assert "FAILED" in capsys.readouterr().out
    assert main(["replay", str(files[0]), "--adapter", "reference"]) == 0
    assert "FIXED" in capsys.readouterr().out


def test_cli_generate_against_the_reference_appends_to_a_run_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from presence_conformance.harness.cli import main

    reports = tmp_path / "reports"
    assert (
        main(["run", "--adapter", "reference", "--report-dir", str(reports), "--select", "enter/*"])
        == 0
    )
    before = json.loads((reports / "results.json").read_text())["cases"]
    for _ in range(2):  # a second generate replaces its own case
        assert (
            main(
                [
                    "generate",
                    "--adapter",
                    "reference",
                    "--examples",
                    "5",
                    "--quiet",
                    "--report-dir",
                    str(reports),
                    "--failures-dir",
                    str(tmp_path / "f"),
                ]
            )
            == 0
        )
    assert "NO FAILURE FOUND" in capsys.readouterr().out
    after = json.loads((reports / "results.json").read_text())["cases"]
    assert len(after) == len(before) + 1 and after[-1]["kind"] == "generated"
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--adapter", "reference", "--examples", "0"],
        ["--adapter", "no-such-adapter"],
        ["--adapter", "reference", "--op-timeout", "-1"],
        ["--adapter", "reference", "--profile", "nightly"],
    ],
)
def test_cli_generate_usage_errors(argv: list[str]) -> None:
    assert generate_main(argv) == 2


# -- the pytest item -------------------------------------------------------------------------------


@pytest.fixture
def few_scenarios(pytester: pytest.Pytester) -> tuple[str, str]:
    """`--scenarios DIR` of three small files: the generated item is what these runs are about,
    and collecting the 200-odd packaged files costs seconds per run."""
    write_files(pytester.path / "my_scenarios", SCENARIOS)
    return ("--scenarios", "my_scenarios")


def test_pytest_collects_the_generated_item(
    pytester: pytest.Pytester, few_scenarios: tuple[str, str]
) -> None:
    result = pytester.runpytest_subprocess(
        "--adapter=reference",
        *few_scenarios,
        "-k",
        "generated/",
        "--generation-examples",
        "5",
        "-v",
        "--hypothesis-show-statistics",
    )
    result.stdout.fnmatch_lines(
        ["generated/ci PASSED*", "*Hypothesis Statistics*", "generated/ci:*", "*5 passing*"]
    )
    result = pytester.runpytest_inprocess(
        "--adapter=reference", *few_scenarios, "--no-generation", "--collect-only", "-q"
    )
    assert any(line.startswith("scenarios/") for line in result.outlines), result.outlines
    assert not any(line.startswith("generated/") for line in result.outlines)


def test_pytest_generated_item_fails_with_the_minimal_program(
    pytester: pytest.Pytester, few_scenarios: tuple[str, str]
) -> None:
    result = pytester.runpytest_subprocess(
        f"--adapter=mutant:{FAST_MUTANT}",
        *few_scenarios,
        "-k",
        "generated/",
        "--generation-profile",
        "ci",
        "--adapter-option",
        "leave_grace=0.02",
        "--op-timeout",
        "1",
        "--generation-failures-dir",
        "found",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*{FAST_REQUIREMENT}*",
            f"*replay: presence-conformance replay found/*.yaml --adapter mutant:{FAST_MUTANT}*",
            "*minimal program*written to found/*",
        ]
    )
    assert len(list((pytester.path / "found").glob("*.yaml"))) == 1


# -- the optimisation of the schema check that generation's speed relies on ----------------------


def test_message_schema_cache_folds_only_valid_identities() -> None:
    from presence_conformance.harness.checks.messages import _schema_errors, _shape_key

    base = {
        "action": "enter",
        "clientId": "a",
        "connectionId": "c1",
        "data": None,
        "timestamp": 5,
        "id": "c1:0:0",
    }
    same = {**base, "clientId": "b", "connectionId": "c2", "timestamp": 9, "id": "c2:3:0"}
    assert _shape_key(base) == _shape_key(same)
    for bad in (
        {"clientId": ""},
        {"id": ""},
        {"timestamp": -1},
        {"timestamp": 1.5},
        {"timestamp": True},
        {"id": None},
        {"data": 3},
    ):
        message = {**base, **bad}
        assert _shape_key(message) != _shape_key(base)
        assert _schema_errors(message, {}), bad
    assert _schema_errors(base, {}) == [] and _schema_errors(same, {}) == []


# -- shrinking that stays fast ---------------------------------------------------------------------


def test_a_candidate_over_the_program_budget_is_inconclusive_never_a_failure() -> None:
    # every shrink candidate is over a budget of a microsecond: none may count as a failure, so
    # the minimal program stays the first failing one, whose failure is genuine
    result = run(mutant("update-as-enter"), profile="dev", seed=5, strict=True, program_budget=1e-6)
    assert result.failure is not None and not result.failure.flaky
    assert result.cut_short > 0
    assert result.failure.steps == result.failure.first_steps
    assert result.outcomes["fail"] == 1  # the first failure only: cut short is not a result
    assert "update.event-emitted" in result.failure.requirements


class _SlowPresenceAdapter(ReferenceAdapter):
    """The reference, correct but slow: every enter takes 20 ms more."""

    class _Presence:
        pass

    async def connect(self, client_id: Any = None, capability: Any = None) -> Any:
        conn = await super().connect(client_id, capability)
        original = conn.channel

        def channel(name: str) -> Any:
            chan = original(name)
            if getattr(chan.presence, "slowed", False):  # the same channel object again
                return chan
            chan.presence.slowed = True
            enter = chan.presence.enter

            async def slow_enter(data: Any = None) -> None:
                await asyncio.sleep(0.02)
                await enter(data)

            chan.presence.enter = slow_enter
            return chan

        conn.channel = channel
        return conn


def test_a_slow_correct_implementation_is_not_failed_by_the_budgets() -> None:
    # the program budget applies only while shrinking, after a genuine failure: a correct
    # implementation, however slow, is judged on every program run to its end
    slow = session_for(_SlowPresenceAdapter(dict(ADAPTER_OPTIONS)))
    result = run(slow, profile="dev", seed=3, examples=15, program_budget=1e-6, shrink_seconds=1e-6)
    assert result.failure is None and result.programs == 15
    assert result.cut_short == 0 and set(result.outcomes) == {"pass"}


def test_past_the_shrink_time_the_smallest_failure_so_far_is_kept() -> None:
    unbounded = run(mutant("update-as-enter"), profile="dev", seed=5, strict=True)
    stopped = run(
        mutant("update-as-enter"), profile="dev", seed=5, strict=True, shrink_seconds=1e-6
    )
    assert unbounded.failure is not None and stopped.failure is not None
    assert stopped.failure.steps == stopped.failure.first_steps >= unbounded.failure.steps
    assert not stopped.failure.flaky
    assert stopped.failure.requirements == ["update.event-emitted"]
    assert stopped.shrink_seconds is not None and stopped.shrink_seconds < 5


SEEDED_DOCUMENTS = """
import hashlib, json
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.generation import GenerationOptions, run_generation
from presence_conformance.harness.session import ConformanceSession
seen = []
session = ConformanceSession(ReferenceAdapter({"leave_grace": "0.02"}), "reference")
run_generation(
    session,
    GenerationOptions(profile="dev", seed=8, examples=40, failures_dir=None, use_database=False),
    on_program=lambda n, doc, case: seen.append(json.dumps(doc, default=repr)),
)
session.stop()
print(hashlib.sha256("\\n".join(seen).encode()).hexdigest())
"""


def test_a_seed_draws_the_same_programs_whatever_the_process_imported() -> None:
    # Hypothesis draws now and then a constant from the source of the local modules a process
    # has imported: a fresh process (few modules) and this one (the whole test suite's) must
    # still draw the same programs from one seed
    import subprocess
    import sys

    fresh = subprocess.run(
        [sys.executable, "-c", SEEDED_DOCUMENTS], capture_output=True, text=True, timeout=300
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    here: dict[str, str] = {}
    exec(SEEDED_DOCUMENTS.replace("print(", "here['digest'] = ("), {"here": here})
    assert fresh.stdout.strip() == here["digest"]
