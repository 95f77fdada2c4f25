"""Issue 13: a server that lets a connection take another identity fails a requirement.

`scenarios/member/identity-from-credential.yaml` runs through `ably-wire` against the reference
server as against any Ably-protocol server: tokens minted through the server's token endpoint
(one without a clientId, one for bob), each connection claiming another clientId in the URL.
The reference server refuses them (TK2c, TD6) and the case passes; a server that reads the
claimed clientId before the token's fails `member.identity-from-credential` (MUST). The same
scenario on the in-process reference and its mutant `token-identity-taken`, and the SDK
adapters' answer (`unsupported`: they cannot connect with another's token), are pinned too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.settings import RunSettings
from presence_conformance.harness.scenario import load_scenario
from presence_conformance.reference_impl.server import PresenceServer, auth
from support import ROOT, run_case, run_server

IDENTITY = "member.identity-from-credential"
# a hole lets each impostor's enter through, and the runner then waits `wait_timeout` for the
# presence set to converge on the model's after each of them: 0.3 s, not the default 1 s, is
# plenty for a server on this machine (the waits of a conforming run end as soon as it answers)
SETTINGS = RunSettings(op_timeout=3.0, wait_timeout=0.3, quiet_period=0.1)


def _case() -> Any:
    return load_scenario(
        ROOT / "scenarios" / "member" / "identity-from-credential.yaml", ROOT / "scenarios"
    )


async def _through_wire(server: PresenceServer) -> CaseResult:
    adapter = AblyWireAdapter(
        {
            "endpoint": f"{server.host}:{server.port}",
            "key": server.default_key,
            "leave_grace": "0.3",
        }
    )
    return await run_case(_case(), adapter, SETTINGS)


def _url_wins(token_client_id: str | None, url_client_id: str | None) -> str | None:
    """The hole: the clientId of the URL wins over the token's."""
    return url_client_id if url_client_id is not None else token_client_id


def _anonymous_token_takes_any(token_client_id: str | None, url_client_id: str | None) -> Any:
    """A narrower hole: only a token without a clientId takes the URL's (one with a clientId is
    still enforced)."""
    if token_client_id is None:
        return url_client_id
    return _REFERENCE(token_client_id, url_client_id)


def _before_issue_13(token_client_id: str | None, url_client_id: str | None) -> Any:
    """The reference server's own hole before issue 13: a token without a clientId, or a
    wildcard one, took the URL's clientId, the wildcard `*` included."""
    if token_client_id is None or token_client_id == "*":
        return url_client_id if url_client_id is not None else token_client_id
    return _REFERENCE(token_client_id, url_client_id)


_REFERENCE = auth.token_client_id


def test_the_reference_server_passes_through_ably_wire() -> None:
    result = run_server(_through_wire)
    assert result.outcome is Outcome.PASS, [(v.requirement, v.message) for v in result.violations]


@pytest.mark.parametrize("hole", [_url_wins, _anonymous_token_takes_any, _before_issue_13])
def test_a_server_that_lets_the_identity_through_fails(
    monkeypatch: pytest.MonkeyPatch, hole: Any
) -> None:
    monkeypatch.setattr(auth, "token_client_id", hole)
    result = run_server(_through_wire)
    assert result.outcome is Outcome.FAIL, result.outcome
    failed = {v.requirement for v in result.violations if v.level == "MUST"}
    assert IDENTITY in failed, failed


def test_the_in_process_reference_passes_and_the_mutant_fails() -> None:
    reference = asyncio.run(run_case(_case(), ReferenceAdapter({"leave_grace": "0.05"}), SETTINGS))
    assert reference.outcome is Outcome.PASS, [v.message for v in reference.violations]
    mutant = get_mutant("token-identity-taken")({"leave_grace": "0.05"})
    result = asyncio.run(run_case(_case(), mutant, SETTINGS))
    assert result.outcome is Outcome.FAIL
    assert IDENTITY in {v.requirement for v in result.violations if v.level == "MUST"}


def test_an_adapter_without_the_feature_reports_unsupported() -> None:
    from presence_conformance.harness.adapter import ALL_FEATURES, Feature

    assert Feature.TOKEN_IDENTITY not in ALL_FEATURES  # declared only by who implements it

    class Plain(ReferenceAdapter):
        features = ALL_FEATURES

    result = asyncio.run(run_case(_case(), Plain({"leave_grace": "0.05"}), SETTINGS))
    assert result.outcome is Outcome.UNSUPPORTED
    assert "token-identity" in (result.error or "")
