"""report.html as a browser renders it: headless Chromium loads the page from disk, the test reads
the rendered DOM, and a screenshot lands in the run folder for a human to look at.

Locally a machine without Chromium skips; in CI (SUPAMIGRATE_REQUIRE_POSTGRES set, .ci/setup-browser
installs Debian's chromium) a missing browser is a failure, so the test can never pass by not running.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.runner import RunOutcome, dry_run
from tests.support.postgres import ENV_REQUIRE, throwaway_database
from tests.support.xrozen import load_xrozen_fixture

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.yaml"
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                 "--mute-audio")


def _chromium() -> str:
    found = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                  if p and os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get(ENV_REQUIRE):
            pytest.fail(f"headless Chromium is required here ({ENV_REQUIRE} is set) but /usr/bin/chromium is "
                        "missing; .ci/setup-browser installs it")
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    return found


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "HOME": str(profile)})


class Dom(HTMLParser):
    """The parts of the rendered page the test checks, plus every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.chart_rows: list[str] = []
        self.findings: list[dict[str, str]] = []
        self.finding_groups: list[str] = []
        self.rejects = 0
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self._finding: dict[str, str] | None = None
        self._cells: list[str] = []
        self._in_td = False
        self._in_rules = False
        self.rules = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        for name in ("href", "src", "action", "srcset", "poster", "data"):
            if name in a:
                self.urls.append(a[name])
        classes = a.get("class", "").split()
        if tag == "g" and "chart-row" in classes:
            self.chart_rows.append(a.get("data-table", ""))
        elif tag == "tbody" and "data-severity" in a:
            self.finding_groups.append(a["data-severity"])
        elif tag == "tr" and "finding" in classes:
            self._finding = {"severity": a.get("data-severity", ""), "id": a.get("data-id", ""),
                             "count": a.get("data-count", "")}
            self._cells = []
        elif tag == "tr" and "reject" in classes:
            self.rejects += 1
        elif tag == "td" and self._finding is not None:
            self._in_td = True
            self._cells.append("")
        elif tag == "pre" and a.get("id") == "rules":
            self._in_rules = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_td = False
        elif tag == "tr" and self._finding is not None:
            self._finding["cells"] = "\x1f".join(self._cells)
            self.findings.append(self._finding)
            self._finding = None
        elif tag == "pre":
            self._in_rules = False

    def handle_data(self, data: str) -> None:
        if self._in_td and self._cells:
            self._cells[-1] += data
        if self._in_rules:
            self.rules += data


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def blocked_run(chromium: str, pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunOutcome]:
    """The shipped config minus the messages orphan rule, so the page has a blocking finding to show."""
    tmp = tmp_path_factory.mktemp("browser")
    data = yaml.safe_load(CONFIG.read_text())
    del data["tables"]["messages"]["orphans"]
    data["target"]["migrations"] = str(ROOT / "target_schema")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    with throwaway_database(pg_admin_dsn, prefix="smhtml") as dsn:
        load_xrozen_fixture(dsn)
        yield dry_run(config, source=dsn, runs_dir=str(tmp / "runs"), target=str(tmp / "live" / "xrozen.db"))


def test_rendered_report_has_one_chart_entry_per_table_and_every_finding(
    chromium: str, blocked_run: RunOutcome, tmp_path: Path
) -> None:
    page = blocked_run.run_dir / "report.html"
    report: dict[str, Any] = json.loads((blocked_run.run_dir / "report.json").read_text())
    assert report["status"] == "dry_run_blocked"
    result = _browser(chromium, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "</html>" in result.stdout, result.stderr[-2000:]
    dom = Dom()
    dom.feed(result.stdout)

    assert dom.chart_rows == [t["name"] for t in report["tables"]]
    assert len(dom.chart_rows) == len(set(dom.chart_rows)) == 12
    expected = [f for s in ("blocking", "warning", "info") for f in report["findings"] if f["severity"] == s]
    assert [(f["id"], f["severity"], f["count"]) for f in dom.findings] == [
        (f["id"], f["severity"], str(f["count"])) for f in expected]
    assert dom.finding_groups == [s for s in ("blocking", "warning", "info")
                                  if any(f["severity"] == s for f in report["findings"])]
    orphan = next(f for f in dom.findings if f["id"] == "fk_orphan.messages.project_id")
    cells = orphan["cells"].split("\x1f")
    assert cells[0] == "blocking" and cells[2] == "messages.project_id" and cells[3] == "2"
    assert cells[5] == "tables.messages.orphans: {project_id: reject}  # or set_null"
    assert "tables.messages.orphans: {project_id: reject}  # or set_null" in dom.rules.splitlines()
    assert dom.rejects == len(report["sample_rejects"]) > 0
    # self-contained: nothing to fetch, nothing to run
    assert dom.urls == [] and "script" not in dom.tags and "link" not in dom.tags and "img" not in dom.tags


def test_screenshot_of_the_report_is_saved_in_the_run_folder(
    chromium: str, blocked_run: RunOutcome, tmp_path: Path
) -> None:
    shot = blocked_run.run_dir / "report.png"
    shot.unlink(missing_ok=True)
    result = _browser(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                      (blocked_run.run_dir / "report.html").as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert len(data) > 20_000  # a blank page compresses to a few hundred bytes
