"""A campaign split across workers shares one Hypothesis example database on Redis
(`--generation-database redis://HOST:PORT/N`): one worker finds a failure of a mutant, another
worker, with a budget of a single program, replays it from the shared database and fails at
once; the same single program without the database passes. Runs against a real `redis-server`
(Debian's package) started on a free loopback port and stopped here; skipped, with the reason,
only when `redis-server` is not installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (apt-get install -y redis-server)"
)
MUTANT = "mutant:cross-channel-leak"
SEED = "12345"  # the dev profile finds this mutant after about a dozen programs from this seed, and shrinks
# it in a second


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("redis", reason="the redis package (campaign extra) is not installed")
    import redis

    port = _free_port()
    server = subprocess.Popen(
        [
            str(REDIS),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _worker(tmp: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """One campaign worker: a separate process running `presence-conformance generate`."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "presence_conformance.harness.cli",
            "generate",
            "--adapter",
            MUTANT,
            "--adapter-option",
            "leave_grace=0.02",
            "--profile",
            "dev",
            "--seed",
            SEED,
            "--op-timeout",
            "1",
            "--failures-dir",
            str(tmp / name),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp,
    )


def test_a_failure_one_worker_found_is_replayed_by_another(redis_url: str, tmp_path: Path) -> None:
    first = _worker(tmp_path, "first", "--examples", "300", "--generation-database", redis_url)
    assert first.returncode == 1, first.stdout + first.stderr
    # the leak shows as an event on the wrong channel or as a second copy of one
    assert "order.channel-isolation" in first.stdout or "order.exactly-once" in first.stdout
    found = sorted(p.name for p in (tmp_path / "first").glob("*.yaml"))
    assert len(found) == 1, found

    # the control: one program from the same seed, without the database, passes
    alone = _worker(tmp_path, "alone", "--examples", "1", "--no-database")
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "1 program(s)" in alone.stdout

    second = _worker(tmp_path, "second", "--examples", "1", "--generation-database", redis_url)
    assert second.returncode == 1, second.stdout + second.stderr
    # the very program the first worker found (the file name holds its requirement and digest)
    replayed = sorted(p.name for p in (tmp_path / "second").glob("*.yaml"))
    assert replayed == found, "the replayed failure was not the first worker's"


def test_a_bad_redis_url_is_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="the redis package (campaign extra) is not installed")
    bad = _worker(
        tmp_path, "bad", "--examples", "1", "--generation-database", "redis://h:notaport/0"
    )
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "--generation-database" in bad.stderr


def test_a_redis_url_makes_a_namespaced_redis_database() -> None:
    pytest.importorskip("redis", reason="the redis package (campaign extra) is not installed")
    from hypothesis.extra.redis import RedisExampleDatabase
    from presence_conformance.harness.generation.profiles import (
        NamespacedDatabase,
        hypothesis_settings,
        profile,
    )

    chosen, _ = hypothesis_settings(
        profile("thorough"), namespace="reference", database="redis://127.0.0.1:1/3"
    )
    assert isinstance(chosen.database, NamespacedDatabase)
    assert isinstance(chosen.database.inner, RedisExampleDatabase)
