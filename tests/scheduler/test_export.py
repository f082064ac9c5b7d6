"""``rolechain schedule export``: every output is parsed and each mapped field checked;
systemd's own tools check the timers and units when they are installed."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.model.loader import loads
from rolechain.scheduler.export import ExportOptions, calendar_specs, export
from rolechain.scheduler.policy import schedule_specs

CHAIN = """
version: 1
settings:
  schedule: {jitter: 0}
principals:
  ci:
    kind: session
    arn: arn:aws:sts::111111111111:assumed-role/github-actions/ci
roles:
  hub: {arn: "arn:aws:iam::222222222222:role/Hub", trusts: [ci]}
role_sets:
  audit: {role_name: Audit, trusts: [hub], accounts: ["333333333333"]}
jobs:
  nightly:
    from: ci
    to: audit
    tasks: [s3.list_buckets]
    schedule: "30 2 * * *"
    timezone: Europe/Berlin
    runtime: 2h
    jitter: 5m
    keep: {runs: 7, days: 14}
  often:
    from: ci
    to: audit
    tasks: [s3.list_buckets]
    schedule: "*/2 * * * MON-FRI"
    overlap: replace
    catch_up: none
    retry_failed: {times: 0}
  queued:
    from: ci
    to: audit
    tasks: [s3.list_buckets]
    schedule: "0 4 1,15 * 1"
    overlap: queue
    catch_up: all
    starting_deadline: 30m
    on_failure: {webhook: "https://hooks.example.com/x"}
"""


@pytest.fixture(scope="module")
def chain():  # type: ignore[no-untyped-def]
    return loads(CHAIN, file="ops.yaml")


def make(chain, target: str, **opts: str):  # type: ignore[no-untyped-def]
    specs = schedule_specs(chain)
    return export(chain, specs, target, ExportOptions("/srv/chains/ops.yaml", **opts)), specs


def test_cron_lines_are_flock_wrapped(chain) -> None:  # type: ignore[no-untyped-def]
    out, specs = make(chain, "cron")
    (text,) = out.files.values()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    jobs = {}
    tz = None
    for line in lines:
        if line.startswith("CRON_TZ="):
            tz = line.split("=", 1)[1]
            continue
        if line.startswith("SHELL="):
            continue
        fields = line.split(" ", 5)
        command = shlex.split(fields[5])
        job = command[command.index("--job") + 1]
        jobs[job] = (" ".join(fields[:5]), command, tz)
    assert jobs["nightly"][0] == "30 2 * * *"
    assert jobs["nightly"][2] == "Europe/Berlin"
    nightly = jobs["nightly"][1]
    offset = specs["nightly"].offset
    assert nightly[:3] == ["sleep", str(offset), "&&"]
    assert nightly[3:6] == ["flock", "-n", "/var/lock/rolechain-nightly.lock"]
    # runtime 2h: the run stops itself at 7200 s; timeout only past that, plus the run's
    # grace and a minute, and it leaves the grace and a minute between TERM and KILL
    assert nightly[6:9] == ["timeout", "--kill-after=70s", "7270s"]
    assert nightly[9:13] == ["rolechain", "run", "/srv/chains/ops.yaml", "--job"]
    assert "--store" in nightly
    assert nightly[nightly.index("--grace") + 1] == "10s"
    assert jobs["queued"][1][:4] == ["flock", "-w", "1800", "/var/lock/rolechain-queued.lock"]
    assert jobs["often"][1][:2] == ["flock", "-n"]  # replace: not expressible
    assert "not expressible here: overlap: replace" in text
    assert any("cron: job often: cannot express overlap: replace" in w for w in out.warnings)
    assert any("catch_up: all" in w for w in out.warnings)
    assert any("alerts on_failure" in w for w in out.warnings)
    check = subprocess.run(
        [
            "sh",
            "-n",
            "-c",
            "\n".join(" ".join(shlex.quote(w) for w in j[1]) for j in jobs.values()),
        ],
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0


def units(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values]}} (keys may repeat)."""
    found: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            found[section] = {}
            continue
        key, _, value = line.partition("=")
        found[section].setdefault(key, []).append(value)
    return found


def test_systemd_service_and_timer(chain) -> None:  # type: ignore[no-untyped-def]
    out, _ = make(chain, "systemd")
    assert sorted(out.files) == [
        f"rolechain-{j}.{k}" for j in ("nightly", "often", "queued") for k in ("service", "timer")
    ]
    timer = units(out.files["rolechain-nightly.timer"])["Timer"]
    assert timer["OnCalendar"] == ["*-*-* 02:30:00 Europe/Berlin"]
    assert timer["Persistent"] == ["true"]
    assert timer["RandomizedDelaySec"] == ["300s"]
    assert timer["FixedRandomDelay"] == ["true"]
    assert timer["Unit"] == ["rolechain-nightly.service"]
    service = units(out.files["rolechain-nightly.service"])["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["TimeoutStartSec"] == ["7270s"]  # runtime + grace + 1m
    assert service["TimeoutStopSec"] == ["70s"]  # SIGTERM to SIGKILL: grace + 1m
    assert shlex.split(service["ExecStart"][0])[:5] == [
        "rolechain",
        "run",
        "/srv/chains/ops.yaml",
        "--job",
        "nightly",
    ]
    often = units(out.files["rolechain-often.timer"])["Timer"]
    assert often["OnCalendar"] == ["Mon..Fri *-*-* *:00/2:00 UTC"]
    assert often["Persistent"] == ["false"]  # catch_up: none
    queued = units(out.files["rolechain-queued.timer"])["Timer"]
    # cron ORs day of month and day of week; systemd ANDs: two calendar lines
    assert queued["OnCalendar"] == ["*-*-01,15 04:00:00 UTC", "Mon *-*-* 04:00:00 UTC"]
    assert any("systemd: job queued: cannot express overlap: queue" in w for w in out.warnings)


def _systemd_fires(spec: str, count: int) -> list[datetime]:
    done = subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={count}", spec],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )
    times = re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\S+ \S+) UTC", done.stdout)
    return [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in times]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
@pytest.mark.parametrize(
    ("expression", "zone"),
    [
        ("30 2 * * *", "Europe/Berlin"),
        ("*/2 * * * MON-FRI", "UTC"),
        ("0 4 1,15 * 1", "UTC"),
        ("15 9-17/4 * JAN,JUL *", "UTC"),
        ("@weekly", "America/New_York"),
        ("0 0 */10 * 1", "UTC"),
    ],
)
def test_systemd_calendar_agrees_with_our_fire_times(expression: str, zone: str) -> None:
    from rolechain.cron import CronSchedule

    now = datetime.now(UTC)
    specs = calendar_specs(expression, zone)
    theirs = sorted({t for spec in specs for t in _systemd_fires(spec, 5)})[:5]
    ours = CronSchedule(expression, zone).next_fires(now, 8)
    assert theirs
    assert set(theirs) <= set(ours), (specs, theirs, ours)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verify_accepts_the_units(chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    specs = schedule_specs(chain)
    exe = str(Path(sys.executable).parent / "rolechain")
    out = export(chain, specs, "systemd", ExportOptions("/srv/chains/ops.yaml", rolechain=exe))
    for name, text in out.files.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "rolechain-" not in done.stderr, done.stderr


def test_kubernetes_cronjob(chain) -> None:  # type: ignore[no-untyped-def]
    out, _ = make(chain, "kubernetes", image="registry.example.com/rolechain:0.1.0")
    docs = {name: yaml.safe_load(text) for name, text in out.files.items()}
    nightly = docs["rolechain-nightly.yaml"]
    assert nightly["apiVersion"] == "batch/v1"
    assert nightly["kind"] == "CronJob"
    spec = nightly["spec"]
    assert spec["schedule"] == "30 2 * * *"
    assert spec["timeZone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 3600
    assert spec["successfulJobsHistoryLimit"] == 7
    assert spec["failedJobsHistoryLimit"] == 7
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 7270  # runtime + grace + 1m
    assert job["template"]["spec"]["terminationGracePeriodSeconds"] == 70
    (container,) = job["template"]["spec"]["containers"]
    assert container["args"][container["args"].index("--grace") + 1] == "10s"
    assert container["image"] == "registry.example.com/rolechain:0.1.0"
    assert container["args"][:4] == ["run", "/etc/rolechain/ops.yaml", "--job", "nightly"]
    assert docs["rolechain-often.yaml"]["spec"]["concurrencyPolicy"] == "Replace"
    assert docs["rolechain-often.yaml"]["spec"]["startingDeadlineSeconds"] == 10
    assert docs["rolechain-queued.yaml"]["spec"]["concurrencyPolicy"] == "Allow"
    assert any("kubernetes: job nightly: cannot express jitter" in w for w in out.warnings)
    assert "# not expressible here: jitter: 5m" in out.files["rolechain-nightly.yaml"]


def test_github_actions_workflow(chain) -> None:  # type: ignore[no-untyped-def]
    out, _ = make(chain, "github-actions")
    docs = {name: yaml.safe_load(text) for name, text in out.files.items()}
    flow = docs["rolechain-nightly.yml"]
    trigger = flow["on"] if "on" in flow else flow[True]  # YAML 1.1 reads a bare on: as True
    assert trigger["schedule"] == [{"cron": "30 2 * * *"}]
    assert flow["permissions"] == {"id-token": "write", "contents": "read"}
    assert flow["concurrency"] == {"group": "rolechain-nightly", "cancel-in-progress": False}
    run = flow["jobs"]["run"]
    # GitHub's cancel sends SIGINT and SIGTERM 7.5 s later: a 5 s grace fits; the limit is
    # runtime + that grace + 1m, in whole minutes
    assert run["timeout-minutes"] == 122
    creds = next(s for s in run["steps"] if "configure-aws-credentials" in s.get("uses", ""))
    assert creds["uses"] == "aws-actions/configure-aws-credentials@v4"
    assert creds["with"]["role-to-assume"] == "arn:aws:iam::111111111111:role/github-actions"
    command = next(s["run"] for s in run["steps"] if "rolechain run" in s.get("run", ""))
    assert shlex.split(command)[:5] == [
        "rolechain",
        "run",
        "/srv/chains/ops.yaml",
        "--job",
        "nightly",
    ]
    assert shlex.split(command)[shlex.split(command).index("--grace") + 1] == "5s"
    assert docs["rolechain-often.yml"]["concurrency"]["cancel-in-progress"] is True
    assert any("timezone: Europe/Berlin" in w for w in out.warnings)
    assert any("less than 5 minutes apart" in w for w in out.warnings)


def test_export_command_writes_files_and_warns(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    result = CliRunner().invoke(
        cli,
        [
            "schedule",
            "export",
            str(root / "chains" / "demo.yaml"),
            "--to",
            "kubernetes",
            "--output",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rolechain-nightly.yaml").exists()
    assert "warning: kubernetes: job nightly" in result.stderr
    result = CliRunner().invoke(
        cli,
        [
            "schedule",
            "export",
            str(root / "chains" / "demo.yaml"),
            "--to",
            "cron",
            "--job",
            "inventory",
        ],
    )
    assert result.exit_code == 2
    assert "has no 'schedule'" in result.stderr
