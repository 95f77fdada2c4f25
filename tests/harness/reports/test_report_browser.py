"""The HTML reports in a real browser: Debian's headless Chromium renders them, runs their JS,
honours `#open=<case_id>`, and takes a screenshot (kept as `reports/artifacts/report.png`).

Without Chromium these tests skip locally and FAIL in CI (`CI=true`), so a CI image that lost
the browser cannot pass silently. Each Chromium call runs in its own process group with a 30 s
timeout, and the group is killed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from presence_conformance.harness.reports import write_matrix, write_reports
from test_reports import HOSTILE, fake_catalogue, passing_run, sample_run

from support import ROOT

ARTIFACTS = ROOT / "reports" / "artifacts"
TIMEOUT = 30
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The Chromium binary; skip (locally) or fail (CI=true) when it is missing."""
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )
    if path:
        return path
    msg = (
        "Chromium is not installed: the HTML report cannot be checked in a browser. "
        "Install it with `apt-get install -y chromium` (Debian) — .ci/run does."
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


def run_chromium(args: list[str], profile: Path) -> str:
    """Run headless Chromium with `args`; return its stdout. Killed after TIMEOUT seconds."""
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT} s: {' '.join(cmd)}")
    finally:
        # Chromium leaves helper processes (zygote, GPU, renderer) behind: end its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, (
        f"chromium exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}"
    )
    return out.decode("utf-8")


class _Dom(HTMLParser):
    """Collects what the tests look at in a dumped DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.html_attrs: dict[str, str | None] = {}
        self.details: dict[str, dict[str, str | None]] = {}
        self.req_ids: list[str] = []
        self.hidden_reqs: set[str] = set()
        self.tags: set[str] = set()
        self.title = ""
        self._in_title = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "html":
            self.html_attrs = a
        elif tag == "details" and a.get("data-case-id") is not None:
            self.details[a["data-case-id"] or ""] = a
        elif a.get("data-req-id") is not None:
            self.req_ids.append(a["data-req-id"] or "")
            if "hidden" in a:
                self.hidden_reqs.add(a["data-req-id"] or "")
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        self.text.append(data)


def dump_dom(url: str, profile: Path) -> _Dom:
    dom = _Dom()
    dom.feed(run_chromium(["--dump-dom", url], profile))
    return dom


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_reports(sample_run(), out, catalogue=fake_catalogue())
    return out / "report.html"


def test_report_renders_and_lists_every_requirement(report: Path, tmp_path: Path) -> None:
    dom = dump_dom(report.as_uri(), tmp_path / "profile")
    assert dom.html_attrs.get("data-js") == "ready", "the report's script did not run"
    text = " ".join(dom.text)
    assert "NOT CONFORMING" in text and "Presence conformance" in text
    assert "10 of 10 requirements shown" in text  # written by the filter code
    assert sorted(dom.req_ids) == sorted(r.id for r in fake_catalogue().requirements)
    assert all(a.get("open") is None for a in dom.details.values()), "nothing opens by itself"
    # the hostile strings stayed text: no element was injected, no script of theirs ran
    assert "img" not in dom.tags
    assert "pwned" not in dom.title
    assert HOSTILE in text


def test_fragment_opens_a_failure(report: Path, tmp_path: Path) -> None:
    url = report.as_uri() + "#open=" + quote("enter/binary-data", safe="")
    dom = dump_dom(url, tmp_path / "profile")
    assert dom.details["enter/binary-data"].get("open") is not None, "details not opened"
    assert "target" in (dom.details["enter/binary-data"].get("class") or "")
    others = [cid for cid, a in dom.details.items() if cid != "enter/binary-data" and "open" in a]
    assert others == []


def test_fragment_presets_the_filters(report: Path, tmp_path: Path) -> None:
    dom = dump_dom(report.as_uri() + "#outcome=fail&level=MUST", tmp_path / "profile")
    shown = set(dom.req_ids) - dom.hidden_reqs
    assert shown == {"enter.event-emitted", "enter.binary-data"}
    assert "2 of 10 requirements shown" in " ".join(dom.text)
    visible = {cid for cid, a in dom.details.items() if "hidden" not in a}
    assert visible == {"enter/binary-data", "enter/hostile-" + HOSTILE}


def test_fragment_opens_a_case_with_a_hostile_id(report: Path, tmp_path: Path) -> None:
    case_id = "enter/hostile-" + HOSTILE
    dom = dump_dom(report.as_uri() + "#open=" + quote(case_id, safe=""), tmp_path / "profile")
    assert dom.details[case_id].get("open") is not None
    assert "pwned" not in dom.title


def test_screenshot(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    url = report.as_uri() + "#open=" + quote("enter/binary-data", safe="")
    run_chromium([f"--screenshot={shot}", "--window-size=1280,2000", url], tmp_path / "profile")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000, "the screenshot looks blank"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "report.png")


def test_matrix_renders(tmp_path: Path) -> None:
    runs = [sample_run("alpha"), passing_run("beta"), sample_run("gamma", partial=True)]
    html_path, _ = write_matrix(runs, tmp_path / "m", catalogue=fake_catalogue())
    dom = dump_dom(html_path.as_uri(), tmp_path / "profile")
    assert dom.html_attrs.get("data-js") == "ready"
    assert sorted(set(dom.req_ids)) == sorted(r.id for r in fake_catalogue().requirements)
    assert "img" not in dom.tags
    text = " ".join(dom.text)
    assert "alpha" in text and "beta" in text and "gamma" in text
