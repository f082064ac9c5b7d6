"""``rolechain schedule export``: every output is parsed and each mapped field checked, and
every file goes through its target's real validator (systemd-analyze verify,
kubernetes-validate, actionlint, a crontab parser: tests/scheduler/validators.py)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rolechain.cli import cli
from rolechain.errors import UsageError
from rolechain.model.loader import loads
from rolechain.scheduler.export import ExportOptions, calendar_specs, export
from rolechain.scheduler.policy import schedule_specs
from scheduler.validators import (
    ActionLint,
    crontab,
    kubernetes_documents,
    rolechain_executable,
    systemd_verify,
    systemd_words,
    units,
    workflow,
)

EXE = "/usr/local/bin/rolechain"


def export_cli(*args: str) -> Result:
    """``rolechain schedule export ARGS``."""
    return CliRunner().invoke(cli, ["schedule", "export", *args])


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
    path = "chains/ops.yaml" if target == "github-actions" else "/srv/chains/ops.yaml"
    opts.setdefault("rolechain", EXE)
    return export(chain, specs, target, ExportOptions(path, **opts)), specs


def test_cron_lines_are_flock_wrapped(chain) -> None:  # type: ignore[no-untyped-def]
    out, specs = make(chain, "cron")
    (text,) = out.files.values()
    parsed, variables = crontab(text)
    assert len(parsed) == 3
    assert variables == ["SHELL=/bin/sh", "CRON_TZ=Europe/Berlin", "CRON_TZ=UTC", "CRON_TZ=UTC"]
    jobs = {argv[argv.index("--job") + 1]: (when, argv) for when, argv in parsed}
    assert jobs["nightly"][0] == "30 2 * * *"
    nightly = jobs["nightly"][1]
    offset = specs["nightly"].offset
    assert nightly[:3] == ["sleep", str(offset), "&&"]  # jitter: 5m asked for
    assert nightly[3:6] == ["flock", "-n", "/var/lock/rolechain-nightly.lock"]
    # runtime 2h: the run stops itself at 7200 s; timeout only past that, plus the run's
    # grace and a minute, and it leaves the grace and a minute between TERM and KILL
    assert nightly[6:9] == ["timeout", "--kill-after=70s", "7270s"]
    assert nightly[9:13] == [EXE, "run", "/srv/chains/ops.yaml", "--job"]
    assert "--store" in nightly
    assert nightly[nightly.index("--grace") + 1] == "10s"
    assert jobs["queued"][1][:4] == ["flock", "-w", "1800", "/var/lock/rolechain-queued.lock"]
    assert jobs["often"][1][:2] == ["flock", "-n"]  # replace: not expressible; no jitter: no sleep
    assert "not expressible here: overlap: replace" in text
    assert any("cron: job often: cannot express overlap: replace" in w for w in out.warnings)
    assert any("catch_up: all" in w for w in out.warnings)
    assert any("alerts on_failure" in w for w in out.warnings)
    assert f'# expects: rolechain at "{EXE}"' in text
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
    assert systemd_words(service["ExecStart"][0])[:5] == [
        EXE,
        "run",
        "/srv/chains/ops.yaml",
        "--job",
        "nightly",
    ]
    often = units(out.files["rolechain-often.timer"])["Timer"]
    assert often["OnCalendar"] == ["Mon..Fri *-*-* *:00/2:00 UTC"]
    assert often["Persistent"] == ["false"]  # catch_up: none
    # no jitter asked for: the timer starts on time, as cron and Kubernetes do
    assert "RandomizedDelaySec" not in often
    assert "FixedRandomDelay" not in often
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
    exe = rolechain_executable()
    out = export(chain, specs, "systemd", ExportOptions("/srv/chains/ops.yaml", rolechain=exe))
    systemd_verify(out.files, tmp_path)


def test_kubernetes_cronjob(chain) -> None:  # type: ignore[no-untyped-def]
    out, _ = make(chain, "kubernetes", image="registry.example.com/rolechain:0.1.0")
    assert sorted(out.files) == [
        "rolechain-common.yaml",
        "rolechain-nightly.yaml",
        "rolechain-often.yaml",
        "rolechain-queued.yaml",
    ]
    docs = {name: kubernetes_documents(text) for name, text in out.files.items()}
    account, claim = docs["rolechain-common.yaml"]
    assert (account["kind"], account["metadata"]["name"]) == ("ServiceAccount", "rolechain")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["metadata"]["name"] == "rolechain-store"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (nightly,) = docs["rolechain-nightly.yaml"]
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
    pod = job["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 70
    assert pod["serviceAccountName"] == "rolechain"
    assert pod["securityContext"]["fsGroup"] == 10001  # the Containerfile's user
    (container,) = pod["containers"]
    assert container["args"][container["args"].index("--grace") + 1] == "10s"
    assert container["image"] == "registry.example.com/rolechain:0.1.0"
    assert container["args"][:4] == ["run", "/etc/rolechain/chain.yaml", "--job", "nightly"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"chains": "/etc/rolechain", "store": "/var/lib/rolechain"}
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["rolechain-store"]
    assert docs["rolechain-often.yaml"][0]["spec"]["concurrencyPolicy"] == "Replace"
    assert docs["rolechain-often.yaml"][0]["spec"]["startingDeadlineSeconds"] == 10
    assert docs["rolechain-queued.yaml"][0]["spec"]["concurrencyPolicy"] == "Allow"
    assert any("kubernetes: job nightly: cannot express jitter" in w for w in out.warnings)
    assert "# not expressible here: jitter: 5m" in out.files["rolechain-nightly.yaml"]
    assert "--from-file=chain.yaml=/srv/chains/ops.yaml" in out.files["rolechain-nightly.yaml"]
    assert not any("names no registry" in w for w in out.warnings)
    plain, _ = make(chain, "kubernetes")
    assert any("names no registry" in w for w in plain.warnings)


def test_github_actions_workflow(chain) -> None:  # type: ignore[no-untyped-def]
    out, _ = make(chain, "github-actions")
    docs = {name: workflow(text) for name, text in out.files.items()}
    flow = docs["rolechain-nightly.yml"]
    assert flow["on"]["schedule"] == [{"cron": "30 2 * * *"}]
    assert flow["permissions"] == {"id-token": "write", "contents": "read"}
    assert flow["concurrency"] == {"group": "rolechain-nightly", "cancel-in-progress": False}
    run = flow["jobs"]["run"]
    # GitHub's cancel sends SIGINT and SIGTERM 7.5 s later: a 5 s grace fits; the limit is
    # runtime + that grace + 1m, in whole minutes
    assert run["timeout-minutes"] == 122
    creds = next(s for s in run["steps"] if "configure-aws-credentials" in s.get("uses", ""))
    assert creds["uses"] == "aws-actions/configure-aws-credentials@v4"
    assert creds["with"]["role-to-assume"] == "arn:aws:iam::111111111111:role/github-actions"
    # rolechain is not on PyPI: installed from the checkout
    installs = [s["run"] for s in run["steps"] if "pip install" in s.get("run", "")]
    assert installs == ["python -m pip install ."]
    command = next(s["run"] for s in run["steps"] if "rolechain run" in s.get("run", ""))
    assert shlex.split(command)[:5] == ["rolechain", "run", "chains/ops.yaml", "--job", "nightly"]
    assert shlex.split(command)[shlex.split(command).index("--grace") + 1] == "5s"
    assert docs["rolechain-often.yml"]["concurrency"]["cancel-in-progress"] is True
    assert any("timezone: Europe/Berlin" in w for w in out.warnings)
    assert any("less than 5 minutes apart" in w for w in out.warnings)
    linter = ActionLint()
    try:
        found = {n: linter.errors(t, f".github/workflows/{n}") for n, t in out.files.items()}
        # actionlint agrees with the export's warning: GitHub runs it every 5 minutes at most
        assert found == {
            "rolechain-nightly.yml": [],
            "rolechain-often.yml": [
                "10:11: scheduled job runs too frequently. it runs once per 120 seconds. the "
                "shortest interval is once every 5 minutes"
            ],
            "rolechain-queued.yml": [],
        }
    finally:
        linter.close()
    with pytest.raises(UsageError, match="not a path inside the repository"):
        export(chain, schedule_specs(chain), "github-actions", ExportOptions("/srv/ops.yaml"))


def test_github_actions_names_the_chain_from_the_repository_root(tmp_path: Path) -> None:
    """Exported from anywhere, with an absolute path: the workflow names the chain file
    from the repository's root, never the exporting machine's path."""
    root = Path(__file__).resolve().parents[2]
    result = export_cli(
        str(root / "chains" / "demo.yaml"), "--to", "github-actions", "-o", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "rolechain-nightly.yml").read_text()
    assert str(root) not in text
    steps = workflow(text)["jobs"]["run"]["steps"]
    command = next(s["run"] for s in steps if "rolechain run" in s.get("run", ""))
    assert shlex.split(command)[:3] == ["rolechain", "run", "chains/demo.yaml"]
    assert "pip install rolechain" not in text
    assert [s["run"] for s in steps if "pip install" in s.get("run", "")] == [
        "python -m pip install ."
    ]
    assert "not on PyPI" in text
    # a chain file in a repository that is not rolechain's source: a wheel, named from
    # the root, or a warning that '.' will not install rolechain
    repo = tmp_path / "infra"
    (repo / ".git").mkdir(parents=True)
    (repo / "ops").mkdir()
    (repo / "ops" / "demo.yaml").write_text((root / "chains" / "demo.yaml").read_text())
    (repo / "wheels").mkdir()
    wheel = repo / "wheels" / "rolechain-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    plain = export_cli(str(repo / "ops" / "demo.yaml"), "--to", "github-actions")
    assert plain.exit_code == 0, plain.output
    assert "is not rolechain's source" in plain.stderr
    with_wheel = export_cli(
        str(repo / "ops" / "demo.yaml"), "--to", "github-actions", "--install", str(wheel)
    )
    assert with_wheel.exit_code == 0, with_wheel.output
    assert "is not rolechain's source" not in with_wheel.stderr
    steps = workflow(with_wheel.stdout)["jobs"]["run"]["steps"]
    assert "python -m pip install wheels/rolechain-0.1.0-py3-none-any.whl" in [
        s.get("run") for s in steps
    ]
    assert "rolechain run ops/demo.yaml" in with_wheel.stdout


def test_systemd_exec_start_is_the_running_rolechain(tmp_path: Path) -> None:
    """ExecStart names an absolute executable (systemd-analyze verify refuses a bare
    'rolechain'): --command, by default the rolechain running the export."""
    root = Path(__file__).resolve().parents[2]
    demo = str(root / "chains" / "demo.yaml")
    result = export_cli(demo, "--to", "systemd", "--output", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    service = units((tmp_path / "a" / "rolechain-nightly.service").read_text())["Service"]
    assert systemd_words(service["ExecStart"][0])[0] == rolechain_executable()
    files = {p.name: p.read_text() for p in (tmp_path / "a").iterdir()}
    systemd_verify(files, tmp_path / "verify")
    given = export_cli(demo, "--to", "cron", "--command", "/opt/rolechain/bin/rolechain")
    assert given.exit_code == 0, given.output
    ((_, argv),), _ = crontab(given.stdout)
    assert "/opt/rolechain/bin/rolechain" in argv
    assert "--command /opt/rolechain/bin/rolechain does not exist on this machine" in given.stderr
    relative = export_cli(demo, "--to", "systemd", "--command", "bin/rolechain")
    assert relative.exit_code == 2
    assert "--command 'bin/rolechain' is not an absolute path" in relative.stderr


def test_export_command_writes_files_and_warns(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    result = export_cli(
        str(root / "chains" / "demo.yaml"), "--to", "kubernetes", "-o", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rolechain-nightly.yaml").exists()
    assert (tmp_path / "rolechain-common.yaml").exists()
    assert "warning: kubernetes: job nightly" in result.stderr
    result = export_cli(str(root / "chains" / "demo.yaml"), "--to", "cron", "--job", "inventory")
    assert result.exit_code == 2
    assert "has no 'schedule'" in result.stderr


ON_TIME = """
version: 1
principals:
  ci: {kind: session, arn: "arn:aws:sts::111111111111:assumed-role/github-actions/ci"}
role_sets:
  audit: {role_name: Audit, trusts: [ci], accounts: ["333333333333"]}
jobs:
  plain: {from: ci, to: audit, tasks: [s3.list_buckets], schedule: "0 3 * * *"}
  spread: {from: ci, to: audit, tasks: [s3.list_buckets], schedule: "0 3 * * *", jitter: 5m}
"""


def test_jobs_start_on_time_unless_they_ask_for_jitter() -> None:
    """Like cron, systemd timers, Kubernetes CronJobs and EventBridge: no jitter unless a
    job (or settings.schedule) asks for it; only then do exports add a delay."""
    chain = loads(ON_TIME, file="ops.yaml")
    specs = schedule_specs(chain)
    assert (specs["plain"].jitter, specs["plain"].offset) == (0, 0)
    assert specs["spread"].jitter == 300
    assert 0 < specs["spread"].offset < 300
    fire = specs["plain"].next_fires(datetime(2026, 6, 1, tzinfo=UTC), 1)[0]
    assert fire.due == fire.scheduled_for == datetime(2026, 6, 1, 3, tzinfo=UTC)
    out, _ = make(chain, "cron")
    jobs, _ = crontab(out.files["rolechain.crontab"])
    argv = {a[a.index("--job") + 1]: a for _, a in jobs}
    assert argv["plain"][0] == "flock"
    assert argv["spread"][:3] == ["sleep", str(specs["spread"].offset), "&&"]
    out, _ = make(chain, "systemd")
    assert "RandomizedDelaySec" not in units(out.files["rolechain-plain.timer"])["Timer"]
    spread = units(out.files["rolechain-spread.timer"])["Timer"]
    assert spread["RandomizedDelaySec"] == ["300s"]
    out, _ = make(chain, "kubernetes")
    assert not any("job plain: cannot express jitter" in w for w in out.warnings)
    assert any("job spread: cannot express jitter" in w for w in out.warnings)
    out, _ = make(chain, "github-actions")
    plain = workflow(out.files["rolechain-plain.yml"])["jobs"]["run"]["steps"]
    assert not any("sleep" in s.get("run", "") for s in plain)


def test_list_shows_the_nominal_time_and_the_jittered_start(tmp_path: Path) -> None:
    path = tmp_path / "ops.yaml"
    path.write_text(ON_TIME)
    result = CliRunner().invoke(cli, ["schedule", str(path), "--list"])
    assert result.exit_code == 0, result.output
    plain, spread = result.stdout.split("spread:")
    nominal = r"^  \d{4}-\d\d-\d\d 03:00:00 UTC  \(\d{4}-\d\d-\d\dT03:00:00Z\)"
    assert len(re.findall(nominal + "$", plain, re.M)) == 5
    offset = schedule_specs(loads(ON_TIME, file="ops.yaml"))["spread"].offset
    start = (
        rf"  starts \d{{4}}-\d\d-\d\d 03:{offset // 60:02d}:{offset % 60:02d} UTC \(\+{offset}s\)$"
    )
    assert len(re.findall(nominal + start, spread, re.M)) == 5, spread
    listed = CliRunner().invoke(cli, ["schedule", "run", str(path), "--list", "--job", "spread"])
    assert listed.exit_code == 0, listed.output
    assert len(re.findall(nominal + start, listed.stdout, re.M)) == 5


def test_kubernetes_names_are_dns_labels_and_distinct() -> None:
    """Job names may hold '_', '.', capitals and end in '-'; CronJob names may not, and
    two jobs must not get the same one."""
    jobs = "".join(
        f"  {name}: {{from: ci, to: audit, tasks: [s3.list_buckets], schedule: '0 3 * * *'}}\n"
        for name in ("a_b", "a.b", "A-b", "ends-", "x" * 64)
    )
    chain = loads(ON_TIME.split("jobs:")[0] + "jobs:\n" + jobs, file="ops.yaml")
    out, _ = make(chain, "kubernetes", image="registry.example.com/rolechain:0.1.0")
    names = [kubernetes_documents(t)[0]["metadata"]["name"] for n, t in out.files.items()
             if n != "rolechain-common.yaml"]  # fmt: skip
    assert len(set(names)) == 5
    for name in names:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
        assert len(name) <= 52
    jobs_of = {
        kubernetes_documents(t)[0]["metadata"]["annotations"]["rolechain.dev/job"]
        for n, t in out.files.items()
        if n != "rolechain-common.yaml"
    }
    assert jobs_of == {"a_b", "a.b", "A-b", "ends-", "x" * 64}


@pytest.mark.parametrize("name", ["demo.yaml", "org-inventory.yaml"])
def test_every_file_exported_from_the_examples_passes_its_validator(
    name: str, tmp_path: Path
) -> None:
    """The shipped chains with a schedule, exported through the CLI to every target: each
    file passes systemd-analyze verify, kubernetes-validate, actionlint or a crontab parse."""
    chain = str(Path(__file__).resolve().parents[2] / "chains" / name)
    files: dict[str, dict[str, str]] = {}
    for target in ("cron", "systemd", "kubernetes", "github-actions"):
        out = tmp_path / target
        result = export_cli(chain, "--to", target, "-o", str(out))
        assert result.exit_code == 0, result.output
        files[target] = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()}
    scheduled = [
        j for j in loads(Path(chain).read_text(), file=name).model.jobs.values() if j.schedule
    ]
    (crontab_text,) = files["cron"].values()
    jobs, _ = crontab(crontab_text)
    assert len(jobs) == len(scheduled)
    systemd_verify(files["systemd"], tmp_path / "verify")
    kinds = [d["kind"] for text in files["kubernetes"].values() for d in kubernetes_documents(text)]
    assert sorted(kinds) == sorted(
        ["ServiceAccount", "PersistentVolumeClaim"] + ["CronJob"] * len(scheduled)
    )
    linter = ActionLint()
    try:
        for file, text in files["github-actions"].items():
            workflow(text)
            found = linter.errors(text, f".github/workflows/{file}")
            # GitHub runs a schedule every 5 minutes at most (the export warns too)
            assert all("runs too frequently" in e for e in found), found
    finally:
        linter.close()


def test_kubernetes_with_a_postgresql_store_has_no_volume_claim(chain) -> None:  # type: ignore[no-untyped-def]
    url = "postgresql://rolechain@db.example.com:5432/rolechain?sslmode=require"
    out, _ = make(chain, "kubernetes", image="registry.example.com/rolechain:0.1.0", store=url)
    docs = {name: kubernetes_documents(text) for name, text in out.files.items()}
    assert [d["kind"] for d in docs["rolechain-common.yaml"]] == ["ServiceAccount"]
    assert "PersistentVolumeClaim" not in out.files["rolechain-common.yaml"]
    (nightly,) = docs["rolechain-nightly.yaml"]
    pod = nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["chains"]
    (container,) = pod["containers"]
    assert [m["name"] for m in container["volumeMounts"]] == ["chains"]
    assert container["args"][container["args"].index("--store") + 1] == url
    assert container["envFrom"] == [{"secretRef": {"name": "rolechain-store", "optional": True}}]
    assert "kubectl create secret generic rolechain-store" in out.files["rolechain-nightly.yaml"]
