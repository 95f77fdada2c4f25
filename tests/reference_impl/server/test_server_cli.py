"""`presence-conformance serve` (serve_main) and the server configuration: keys files, options."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from presence_conformance.reference_impl.server import (
    ConfigError,
    KeySpec,
    ServerConfig,
    load_keys_file,
    serve_main,
)
from presence_conformance.reference_impl.server.cli import build_parser, config_from_args
from presence_conformance.reference_impl.server.testing import RawClient


def test_keys_file_loads_and_checks(tmp_path: Path) -> None:
    good = tmp_path / "keys.json"
    good.write_text(
        json.dumps(
            {
                "app.full": {"secret": "s1", "capability": {"*": ["*"]}},
                "app.read": {"secret": "s2", "capability": {"room:*": ["subscribe", "history"]}},
                "app.default": {"secret": "s3"},
            }
        )
    )
    keys = load_keys_file(good)
    assert keys["app.read"] == KeySpec("s2", {"room:*": ["subscribe", "history"]})
    assert keys["app.default"].capability == {"*": ["*"]}
    for content, words in [
        ("{", "not valid JSON"),
        ("[]", "non-empty JSON object"),
        (json.dumps({"bad:name": {"secret": "s"}}), "bad:name"),
        (json.dumps({"a.b": {"secret": ""}}), "secret"),
        (json.dumps({"a.b": {"secret": "s", "capability": {"*": ["presense"]}}}), "presense"),
        (json.dumps({"a.b": {"secret": "s", "capability": {"*": "presence"}}}), "list"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(ConfigError, match=words):
            load_keys_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_keys_file(tmp_path / "missing.json")


def test_server_config_defaults_and_checks() -> None:
    config = ServerConfig()
    assert config.keys == {"appid.keyid": KeySpec("secret", {"*": ["*"]})}
    assert config.leave_grace == 15.0 and config.sync_page_size == 100
    assert config.max_message_size == 65536 and config.max_idle_interval == 15000
    with pytest.raises(ConfigError, match="sync_page_size"):
        ServerConfig(sync_page_size=0)
    with pytest.raises(ConfigError, match="leave_grace"):
        ServerConfig(leave_grace=-1)
    with pytest.raises(ConfigError, match="keys"):
        ServerConfig(keys={})


def test_parser_options(tmp_path: Path) -> None:
    keys = tmp_path / "k.json"
    keys.write_text(json.dumps({"a.b": {"secret": "z"}}))
    args = build_parser().parse_args(
        ["--port", "0", "--keys", str(keys), "--leave-grace", "0.5", "--sync-page", "7"]
    )
    config = config_from_args(args)
    assert list(config.keys) == ["a.b"] and config.leave_grace == 0.5
    assert config.sync_page_size == 7
    assert config.history_max_count == 10000 and config.history_max_age == 600.0
    assert config.max_connections == 10000 and config.allowed_origins == ()
    assert config.max_sockets is None and config.max_sockets_per_ip is None


def test_parser_limit_options_and_their_checks(capsys: pytest.CaptureFixture) -> None:
    args = build_parser().parse_args(
        [
            "--history-max-count",
            "50",
            "--history-max-age",
            "30",
            "--max-connections",
            "9",
            "--max-sockets",
            "20",
            "--max-sockets-per-ip",
            "4",
            "--allow-origin",
            "http://a.example",
            "--allow-origin",
            "*",
            "--show-keys",
        ]
    )
    config = config_from_args(args)
    assert (config.history_max_count, config.history_max_age_ms) == (50, 30000)
    assert config.max_connections == 9 and config.allowed_origins == ("http://a.example", "*")
    assert (config.effective_max_sockets, config.max_sockets_per_ip) == (20, 4)
    assert args.show_keys
    assert serve_main(["--history-max-count", "0"]) == 2
    assert "history_max_count" in capsys.readouterr().err
    assert serve_main(["--max-connections", "0"]) == 2
    assert serve_main(["--max-sockets-per-ip", "0"]) == 2
    assert "max_sockets_per_ip" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="handshake_timeout"):
        ServerConfig(handshake_timeout=0)


def test_serve_main_refuses_a_bad_keys_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert serve_main(["serve", "--keys", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        serve_main(["--port", "nope"])


def test_serve_runs_prints_where_it_listens_and_stops_on_sigint() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "presence_conformance.reference_impl.server",
            "--port",
            "0",
            "--leave-grace",
            "0.1",
            "--show-keys",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on ws://127.0.0.1:"), line
        assert "(REST http://127.0.0.1:" in line and line.rstrip().endswith(
            "key appid.keyid:secret"
        )
        port = int(line.split("ws://127.0.0.1:")[1].split()[0])

        async def client() -> None:
            c = await RawClient.connect_url(
                f"ws://127.0.0.1:{port}/?key=appid.keyid:secret&clientId=cli"
            )
            await c.attach("room")
            assert (await c.presence("room", 0, {"action": 2}))["action"] == 1
            await c.close()

        asyncio.run(client())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_loop_choice(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from presence_conformance.reference_impl.server.cli import loop_factory

    assert loop_factory("asyncio") == ("asyncio", None)
    assert build_parser().parse_args([]).loop == "auto"
    uvloop = pytest.importorskip("uvloop", reason="uvloop is the [fast] extra")
    name, factory = loop_factory("auto")
    assert name == f"uvloop {uvloop.__version__}" and factory is uvloop.new_event_loop
    assert loop_factory("uvloop")[1] is uvloop.new_event_loop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert loop_factory("auto") == ("asyncio (uvloop is not installed)", None)
    with pytest.raises(ImportError, match=r"presence-conformance\[fast\]"):
        loop_factory("uvloop")
    assert serve_main(["--loop", "uvloop", "--port", "0"]) == 2
    assert "uvloop is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_serve_says_which_event_loop_it_runs_on(loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is the [fast] extra")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "presence_conformance.reference_impl.server"),
            *("--port", "0", "--loop", loop),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        port = int(line.split("ws://127.0.0.1:")[1].split()[0])
        assert proc.stdout.readline().startswith(f"event loop: {loop}")

        async def client() -> None:
            c = await RawClient.connect_url(
                f"ws://127.0.0.1:{port}/?key=appid.keyid:secret&clientId=cli&format=msgpack"
            )
            await c.attach("room")
            assert (await c.presence("room", 0, {"action": 2, "data": b"\x00"}))["action"] == 1
            assert (await c.expect(14))["presence"][0]["data"] == b"\x00"
            await c.close()

        asyncio.run(client())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_prints_key_names_but_no_secret_unless_asked() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "presence_conformance.reference_impl.server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert line.rstrip().endswith("key appid.keyid"), line
        assert "secret" not in line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
