"""``rolechain report`` in a real headless browser (Debian's ``chromium``): the page loads
from disk without a console message, its table has one row per target, sorting works,
the plan's graph stays small at 1,000 targets; a screenshot is saved for review.

Chromium is found on PATH; on CI (``CI`` set) it is installed with apt-get when missing,
elsewhere the test is skipped, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.results.store import Store

from .stores import store_run

TARGETS = 1000
FAILED = {f"{n:012d}" for n in range(100000000000, 100000000000 + TARGETS, 97)}  # 11 targets
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]? (?P<message>.*)")


def _find() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = _find()
    if found is None and os.environ.get("CI"):
        subprocess.run(["apt-get", "update"], check=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            check=True,
            timeout=1200,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = _find()
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    return found


def browse(chromium: str, page: Path, *flags: str) -> tuple[str, list[str]]:
    """(the DOM after the page's scripts ran, every console message)."""
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={page.parent / 'profile'}",
         *flags, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [m.group("message") for m in CONSOLE.finditer(done.stderr)]
    return done.stdout, messages


def test_the_console_check_catches_an_error(chromium: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    _, messages = browse(chromium, bad, "--dump-dom")
    assert any("boom" in m for m in messages)


@pytest.mark.slow
def test_the_report_in_a_browser(chromium: str, tmp_path: Path) -> None:
    accounts = [f"{n:012d}" for n in range(100000000000, 100000000000 + TARGETS)]
    db = tmp_path / "runs.db"
    with Store(db) as store:
        first = {a: {"k1": {"size": 1}} for a in accounts}
        store_run(store, "A", first, accounts=accounts, when="2026-01-01T03:00:00Z")
        second = {a: {"k1": {"size": 2 if a == accounts[1] else 1}} for a in accounts}
        store_run(store, "B", second, failed=FAILED, accounts=accounts, when="2026-01-02T03:00:00Z")
    page = tmp_path / "report.html"
    answer = CliRunner().invoke(cli, ["report", "--store", str(db), "--output", str(page)])
    assert answer.exit_code == 0, answer.output
    text = page.read_text()
    # self-contained: nothing is fetched (the SVG namespace is a name, not a fetch)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text

    dom, messages = browse(chromium, page, "--dump-dom")
    assert messages == []
    assert 'data-ready="1"' in dom  # the page's script ran to its end
    assert dom.count('<tr class="target">') == TARGETS
    assert len(re.findall(r'<g class="node', dom)) < 40  # the role set is collapsed
    assert f"1,000 targets, {len(FAILED)} failed" in dom
    assert dom.count('<g class="node target failed">') == len(FAILED)
    assert "AccessDenied" in dom  # failures by cause...
    assert "Fix:" in dom  # ...with the fix
    assert "0 added, 0 removed, 1 changed" in dom  # the diff against run A

    # Sorting: click "duration" then "target" twice; the order is read back from the DOM.
    probe = tmp_path / "sorted.html"
    script = (
        "<script>var h=document.querySelectorAll('#targets th');h[0].click();h[0].click();"
        "var names=[].map.call(document.querySelectorAll('#targets tbody tr'),"
        "function(r){return r.cells[0].textContent;});"
        "document.body.setAttribute('data-order', names.slice(0,3).join(' '));</script>"
    )
    probe.write_text(text.replace("</body>", script + "</body>"))
    dom, messages = browse(chromium, probe, "--dump-dom")
    assert messages == []
    order = re.search(r'data-order="([^"]*)"', dom)
    assert order is not None
    expected = sorted((f"audit@{a}" for a in accounts), reverse=True)[:3]
    assert order.group(1).split() == expected

    shot = tmp_path / "report.png"
    browse(chromium, page, f"--screenshot={shot}", "--window-size=1400,1800")
    assert shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")
