"""Generated `server:` steps: what the generator must never draw, each a false alarm the unbroken
client (ably-wire against the embedded server) once raised."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from presence_conformance.harness.adapter import ALL_FEATURES, Feature
from presence_conformance.harness.generation import GenerationConfig, programs

SERVER_CONFIG = GenerationConfig(
    features=frozenset(ALL_FEATURES) | {Feature.SERVER_CONTROL}, server_steps=True
)


def _leaves(steps: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for step in steps:
        ((kind, body),) = step.items()
        if kind == "concurrently":
            out.extend(_leaves(body))
        elif kind == "interrupt":
            out.append((kind, body))
            out.extend(_leaves(body.get("during", [])))
        else:
            out.append((kind, body))
    return out


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    args = next((body[c] for c in ("presence", "sync") if c in body), None) or {}
    frames = [args.get("add") or [], *(args.get("between") or args.get("frames") or [])]
    return [item for frame in frames for item in frame]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(SERVER_CONFIG))
def test_server_steps_never_tell_a_client_of_its_own_members(doc: dict[str, Any]) -> None:
    """An item of the target's own connection would make it a member of the client's own
    (RTP17b), which the client enters again at its next ATTACHED (RTP17i): the model does not
    know of it."""
    for kind, body in _leaves(doc["steps"]):
        if kind == "server":
            assert all(item.get("of") != body["client"] for item in _items(body)), body


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(SERVER_CONFIG))
def test_no_attached_detached_or_error_where_the_client_has_a_member(doc: dict[str, Any]) -> None:
    """An enter or an update (which enters a member that is not there), by itself or for its own
    clientId with enterClient, makes a member of the connection's own, which the client enters
    again on a re-attach (RTP17i) or which an ERROR's detach makes leave on the server: generation
    leaves those to the scenarios."""
    own: set[tuple[str, str]] = set()
    # an anonymous connection's enter is refused (RTP8j): it has no member
    anonymous = {
        n for n, spec in doc["clients"].items() if "client_id" in spec and not spec["client_id"]
    }
    for kind, body in _leaves(doc["steps"]):
        client, channel = body.get("client"), body.get("channel")
        if (
            kind in ("enter", "update", "enter_client", "update_client")
            and "expect_error" not in body
            and client not in anonymous
        ):
            own.add((client, channel))
        elif kind in ("drop", "close"):
            own = {p for p in own if p[0] != client}
        elif kind == "server" and any(c in body for c in ("attached", "detached", "error")):
            assert (client, channel) not in own, body
