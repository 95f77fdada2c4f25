"""Smoke test of `bench/profile_enter.py`: it handles the frames and prints the CPU per frame
(and a profile) on both loops. No timing is asserted: the figures depend on the machine."""

from __future__ import annotations

import pytest
from support import run_bench


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_profile_enter_prints_the_cost_per_frame(loop: str) -> None:
    result = run_bench("profile_enter.py", "--loop", loop, "--frames", "200", "--profile")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"[{loop}] 200 PRESENCE frames handled in process:" in result.stdout
    assert "us CPU per frame; 200 writes" in result.stdout  # one write per frame: event + ACK
    assert "on_text" in result.stdout  # the profile names the handler


def test_profile_enter_compares_the_fast_path_with_the_general_path() -> None:
    result = run_bench("profile_enter.py", "--frames", "200", "--compare")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[asyncio] 200 PRESENCE frames handled in process:" in result.stdout
    assert "the same frames on the general path:" in result.stdout
    assert "the fast path takes" in result.stdout
