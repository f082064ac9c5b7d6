"""``rolechain schedule``: run scheduled jobs; ``rolechain schedule export``: write them
for cron, systemd, Kubernetes or GitHub Actions."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from rolechain.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    chain_path_argument,
    check_sandbox_options,
    handle_errors,
    sandbox_credentials,
    sandbox_environment,
    sandbox_options,
)
from rolechain.cli._store import STORE_ENV, exists, from_settings, store_option
from rolechain.cli._store import name as store_name
from rolechain.errors import UsageError
from rolechain.locations import Location

DURATION = click.STRING


def _seconds(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    from rolechain.model.durations import parse_duration

    try:
        return float(parse_duration(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


class ScheduleGroup(click.Group):
    """``schedule PATH ...`` runs the scheduler; ``schedule export ...`` exports. A first
    argument that is not a subcommand's name goes to ``run``."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            return self.default_command, self.commands[self.default_command], args
        return super().resolve_command(ctx, args)


@click.group(cls=ScheduleGroup)
def schedule() -> None:
    """Run the jobs of a chain file that have a 'schedule', or export them to other
    schedulers.

    'rolechain schedule PATH ...' is 'rolechain schedule run PATH ...': its options (--store,
    --job, --list, --dry-run, --sandbox, --time-scale, --for, --check, --strict, --grace,
    --metrics-port, ...) are listed by 'rolechain schedule run --help'.

    \b
    Example:
      rolechain schedule chains/demo.yaml --store runs.db
      rolechain schedule chains/demo.yaml --list
      rolechain schedule chains/demo.yaml --sandbox --time-scale 600 --for 10m --store runs.db
      rolechain schedule export chains/demo.yaml --to systemd --output deploy/
    """


@schedule.command("run")
@chain_path_argument()
@click.option(
    "--job",
    "-j",
    "jobs",
    multiple=True,
    metavar="JOB",
    help="Only these jobs (repeatable) [default: every job with a schedule].",
)
@store_option(
    help="The store of runs and history. Required, except with --list and --dry-run. One "
    "scheduler per SQLite store.",
    settings=True,
)
@click.option(
    "--lease",
    default="15s",
    show_default=True,
    metavar="DURATION",
    help="On PostgreSQL: how long a leader that stops renewing holds the schedule before a "
    "standby takes over (real time, also with --time-scale). It renews every 2/15 of it and "
    "stops firing when a renewal has not succeeded for 2/3 of it.",
)
@click.option(
    "--list",
    "list_",
    is_flag=True,
    help="Print each job's next 5 fire times (its zone and UTC) and last run; exit.",
)
@click.option("--dry-run", is_flag=True, help="Run nothing: log what would fire, when it would.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line per event on stderr.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="N",
    help="Serve Prometheus metrics (/metrics) and /healthz on this port.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address for --metrics-port (0.0.0.0 in a container).",
)
@click.option(
    "--grace",
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="On SIGTERM/SIGINT, how long running jobs may go on before they are stopped "
    "(tasks still running or not started are recorded Interrupted); also how long tasks in "
    "flight of a run stopped by 'overlap: replace' may finish.",
)
@click.option(
    "--for",
    "for_",
    default=None,
    metavar="DURATION",
    help="Stop after this much schedule time (rehearsals, tests).",
)
@click.option("--no-watch", is_flag=True, help="Reload on SIGHUP only, not when PATH changes.")
@sandbox_options(what="Run every job", provision="instead.")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, metavar="N",
              help="With --sandbox or --dry-run: the schedule's clock (and the sandbox's) runs "
              "N times faster, so a day passes in 86400/N seconds.")  # fmt: skip
@click.option("--time-origin", type=click.DateTime(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"]),
              default=None, metavar="UTC-TIME",
              help="With --time-scale: the real moment (UTC, 2026-12-01T03:00:00Z) the "
              "rehearsal's time starts from [default: now]; replicas of one rehearsal are "
              "given the same one, so they agree on the time.")  # fmt: skip
@click.option(
    "--check",
    "check_",
    is_flag=True,
    help="At start, call sts:GetCallerIdentity once with each scheduled job's principal "
    "(without it, credentials are only looked for: no AWS call).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 2 instead of warning when a scheduled job's principal has no usable "
    "credentials (or credentials that will not last unattended).",
)
@handle_errors
def run(
    path: Path,
    jobs: tuple[str, ...],
    store: Location | None,
    lease: str,
    list_: bool,
    dry_run: bool,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
    grace: str,
    for_: str | None,
    no_watch: bool,
    use_sandbox: bool,
    provision: Path | None,
    time_scale: float,
    time_origin: datetime | None,
    check_: bool,
    strict: bool,
) -> None:
    """Run every job of PATH that has a 'schedule' (or the --job ones) until stopped.

    Each fire runs the job through the same code as 'rolechain run', recording it in
    --store with its trigger time. The job's keys (timezone, overlap, catch_up,
    starting_deadline, jitter, runtime, retry_failed, on_failure/on_success/on_recovery,
    keep) say how; see docs/scheduling.md. SIGHUP, or a change to PATH, reloads it (an
    invalid file keeps the running schedule); SIGTERM or Ctrl-C stops scheduling and gives
    running jobs --grace to finish; a second signal stops at once.

    With --store postgresql://..., run it on several hosts: one replica leads (fires each
    job once per scheduled time), the others stand by and take over within --lease when
    it dies or loses the database ("Running more than one scheduler" in
    docs/scheduling.md).

    Exit status: 0 stopped; 2 invalid chain file, plan, arguments, or another scheduler
    holds the (SQLite) store; 130 stopped by a second signal.

    \b
    Example:
      rolechain schedule chains/demo.yaml --store runs.db
      rolechain schedule chains/demo.yaml --list
      rolechain schedule chains/demo.yaml --sandbox --time-scale 600 --for 10m --store runs.db
    """
    from rolechain.scheduler.service import ScheduleLoader

    check_sandbox_options(use_sandbox, provision=provision is not None)
    if time_scale != 1.0 and not (use_sandbox or dry_run):
        raise click.UsageError("--time-scale needs --sandbox or --dry-run")
    grace_s = _seconds(grace, "--grace") or 0.0
    for_s = _seconds(for_, "--for")
    lease_s = _seconds(lease, "--lease") or 0.0
    if lease_s < 1:
        raise click.BadParameter("the lease must be at least 1s", param_hint="--lease")
    if time_origin is not None and time_scale == 1.0:
        raise click.UsageError("--time-origin needs --time-scale")
    loader = ScheduleLoader(path, jobs, check_credentials=not use_sandbox)
    chain, specs = loader()
    store = from_settings(store, chain)
    if store is None and not (list_ or dry_run):
        raise click.UsageError(
            f"--store PATH|URL (or ${STORE_ENV}, or settings.store in the chain file) is required"
        )
    if list_:
        _list(chain, specs, store)
        return
    from rolechain.scheduler.clock import RealClock
    from rolechain.scheduler.logs import EventLog

    if time_origin is None:
        clock = RealClock(time_scale)
    else:
        clock = RealClock(time_scale, time_origin.replace(tzinfo=UTC))
    log = EventLog(sys.stderr, log_format, clock.now)
    warnings = [*loader.warnings, *_credential_warnings(chain, specs, log, use_sandbox, check_)]
    for warning in warnings:
        log.warning("credentials", problem=str(warning))
    if warnings and strict:
        raise UsageError(
            f"{len(warnings)} credential problem{'s' if len(warnings) != 1 else ''} "
            "(above); --strict refuses to start",
            hint="give each principal credentials that last unattended, or drop --strict",
        )
    with contextlib.ExitStack() as stack:
        credentials_for = None
        if isinstance(store, Path) and not dry_run:
            from rolechain.scheduler.lock import StoreLock

            # One scheduler per store, said before a sandbox starts. The lock is a file next
            # to a SQLite store, so it holds on one host only; a PostgreSQL store (a URL) has
            # no such file and is not locked here: several schedulers sharing one database
            # agree among themselves in the database (see docs/scheduling.md).
            stack.enter_context(StoreLock(store))
        if use_sandbox:
            credentials_for = _sandbox(stack, chain, provision, time_scale, log)
        _schedule(
            stack, loader, chain, specs, log=log, store=store, dry_run=dry_run,
            metrics_port=metrics_port, metrics_host=metrics_host, grace=grace_s,
            for_s=for_s, watch=not no_watch, clock=clock, credentials_for=credentials_for,
            lease=lease_s,
        )  # fmt: skip
    sys.exit(EXIT_OK)


def _shared(store: Location) -> bool:
    """Whether the store is PostgreSQL: replicas share it under a lease (else one
    scheduler holds the SQLite file's lock)."""
    return isinstance(store, str)


def _credential_warnings(
    chain: Any, specs: Any, log: Any, use_sandbox: bool, call: bool
) -> list[Any]:
    """Whether each scheduled job's principal has credentials (the sandbox gives its own)."""
    if use_sandbox:
        return []
    from rolechain.scheduler.credcheck import check_principals, warnings_of

    checks = check_principals(chain, list(specs), call=call)
    for found in checks:
        if found.caller is not None and found.problem is None:
            log.emit("credentials_checked", principal=found.principal, caller=found.caller)
    return warnings_of(chain, checks)


def _sandbox(
    stack: contextlib.ExitStack[Any], chain: Any, provision: Path | None, scale: float, log: Any
) -> Any:
    """Every job against a sandbox: this process pointed at it (its first principal), and
    each job given its own principal's sandbox credentials."""
    info = stack.enter_context(sandbox_environment(chain, provision, time_scale=scale))
    log.emit("sandbox", endpoint=info.endpoint, time_scale=scale)
    principals = info.principals

    def credentials_for(chain: Any, job: str) -> Any:
        return sandbox_credentials(principals.get(chain.model.jobs[job].from_, info.env))

    return credentials_for


def _schedule(
    stack: contextlib.ExitStack[Any],
    loader: Any,
    chain: Any,
    specs: Any,
    *,
    log: Any,
    store: Location | None,
    dry_run: bool,
    metrics_port: int | None,
    metrics_host: str,
    grace: float,
    for_s: float | None,
    watch: bool,
    clock: Any,
    credentials_for: Any,
    lease: float,
) -> None:
    from rolechain.scheduler.alerts import AlertSender
    from rolechain.scheduler.engine import MemoryHistory, Scheduler
    from rolechain.scheduler.launcher import ExecutorLauncher

    history: Any
    holder = None
    if store is not None and not dry_run:
        from rolechain.scheduler.lease import new_holder

        holder = new_holder()
        if _shared(store):
            # Every connection of this replica (lease, claims, history, runs) carries its
            # name, so the server can tell them apart (pg_stat_activity.application_name).
            os.environ["PGAPPNAME"] = _app_name(holder)
    if store is not None and holder is not None and _shared(store):
        from rolechain.results.store import Store

        # The schema made current (or refused) before anything else; each term as leader
        # opens the store for itself (see make below).
        Store(store, reap=False).close()
        history = None
    elif store is not None:
        from rolechain.results.store import Store

        history = stack.enter_context(Store(store))
    else:
        history = MemoryHistory()
    metrics: Any = None
    if metrics_port is not None:
        from rolechain.scheduler.metrics import PrometheusMetrics, serve

        metrics = PrometheusMetrics()
        try:
            stop_serving = serve(metrics, metrics_port, metrics_host)
        except OSError as exc:
            raise click.UsageError(
                f"--metrics-port {metrics_port}: {exc.strerror or exc}"
            ) from None
        stack.callback(stop_serving)
        log.emit("metrics", url=f"http://{metrics_host}:{metrics_port}/metrics")
    launcher = ExecutorLauncher(
        store or Path(os.devnull), credentials_for=credentials_for, time_scale=clock.scale,
        grace=grace, now=lambda: datetime.now(UTC), log=log,
    )  # fmt: skip
    claims = None
    if store is not None and holder is not None and _shared(store):
        # Replicas: a lease, and each fire claimed. (On SQLite the file lock is the whole
        # story, and a fire goes on when the store cannot be written, as on a full disk.)
        from rolechain.scheduler.claims import Claims
        from rolechain.scheduler.lease import Database, Lease, Timing
        from rolechain.scheduler.types import Metrics

        database = Database(str(store), application_name=_app_name(holder))
        stack.callback(database.close)
        metrics = metrics or Metrics()
        replica_lease = Lease(
            Database(str(store), application_name=_app_name(holder)),
            timing=Timing.of(lease), holder=holder, log=log,
        )  # fmt: skip
        claims = Claims(database, holder=holder, lease=replica_lease)

    def make() -> Any:
        from rolechain.results.store import Store

        # A replica opens the store for each term as leader (see Replica).
        replica = store is not None and claims is not None and claims.lease is not None
        current = Store(store) if replica and store is not None else history
        return Scheduler(
            chain, specs, launcher=launcher, history=current, clock=clock, log=log,
            alerts=AlertSender(log), metrics=metrics, reloader=_reloader(loader, log),
            dry_run=dry_run, store_name=store_name(store) if store else None, claims=claims,
        )  # fmt: skip

    scheduler: Any
    if claims is not None and claims.lease is not None:
        from rolechain.scheduler.replica import Replica

        scheduler = Replica(claims.lease, make, clock=clock, log=log, metrics=metrics)
    else:
        scheduler = make()
    if watch:
        from rolechain.scheduler.service import Watcher

        watcher = Watcher(loader, scheduler.request_reload)
        watcher.start()
        stack.callback(watcher.stop)
    until = clock.now() + timedelta(seconds=for_s) if for_s is not None else None
    with _signals(scheduler, log):
        scheduler.run(until=until, grace=grace)


def _app_name(holder: str) -> str:
    return f"rolechain-scheduler {holder}"[:63]  # PostgreSQL keeps 63 bytes


def _reloader(loader: Any, log: Any) -> Any:
    def reload() -> Any:
        chain, specs = loader()
        for warning in loader.warnings:
            log.warning("credentials", problem=str(warning))
        return chain, specs

    return reload


class _Forced(Exception):
    pass


@contextlib.contextmanager
def _signals(scheduler: Any, log: Any) -> Iterator[None]:
    """SIGTERM/SIGINT: stop gracefully; a second one: stop now (exit 130). SIGHUP: reload."""
    count = 0

    # Handlers only set flags (or raise): logging here could deadlock on the log's lock.
    def stop(signum: int, frame: object) -> None:
        nonlocal count
        count += 1
        if count == 1:
            scheduler.request_stop(signal.Signals(signum).name)
            return
        raise _Forced(signal.Signals(signum).name)

    def reload(signum: int, frame: object) -> None:
        scheduler.request_reload("SIGHUP")

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    try:
        yield
    except _Forced as forced:
        log.warning("stop_requested", by=str(forced), action="stop now; running jobs are "
                    "recorded as interrupted")  # fmt: skip
        running = scheduler.running
        why = "the scheduler was stopped at once"
        for handle in running:  # all of them first: each stops without waiting for tasks
            handle.cancel(why, grace=0)
        for handle in running:  # then each writes its records, or is given up on
            abandon = getattr(handle, "abandon", None)
            if abandon is not None:
                abandon(why)
        log.emit("stopped", forced=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _list(chain: Any, specs: Any, store: Location | None) -> None:
    from rolechain.model.durations import format_duration

    now = datetime.now(UTC)
    database = None
    if store is not None and exists(store):
        from rolechain.results.store import Store

        database = Store(store)
        if _shared(store):
            click.echo(_leader_line(store))
    try:
        for name, spec in specs.items():
            tz = spec.cron.tz
            jitter = (
                f", jitter {format_duration(spec.jitter)} (this job +{spec.offset}s)"
                if spec.jitter
                else ""
            )
            click.echo(f"{name}: {spec.cron.expression} in {spec.cron.timezone} "
                       f"({spec.cron.describe()}){jitter}")  # fmt: skip
            click.echo(
                f"  overlap {spec.overlap}, catch_up {spec.catch_up} within "
                f"{format_duration(spec.starting_deadline)}"
                + (f", runtime {format_duration(spec.runtime)}" if spec.runtime else "")
                + (
                    f", retry_failed {spec.retry_times}x after {format_duration(spec.retry_after)}"
                    if spec.retry_times
                    else ""
                )
            )
            for fire in spec.next_fires(now, 5):
                # The nominal (cron) time first, as cron and systemd list it; with jitter,
                # when this job actually starts beside it.
                local = fire.scheduled_for.astimezone(tz)
                line = f"  {local:%Y-%m-%d %H:%M:%S %Z}  ({fire.scheduled_for:%Y-%m-%dT%H:%M:%SZ})"
                if spec.jitter:
                    start = fire.due.astimezone(tz)
                    line += f"  starts {start:%Y-%m-%d %H:%M:%S %Z} (+{spec.offset}s)"
                click.echo(line)
            click.echo("  last run: " + _last_run(database, name, store))
    finally:
        if database is not None:
            database.close()


def _export_options(
    path: Path,
    target: str,
    store: str,
    image: str | None,
    command: str | None,
    install: str | None,
) -> tuple[Any, list[str]]:
    """The paths an export names where it runs, and warnings about them."""
    from rolechain.scheduler import deploy
    from rolechain.scheduler.export import ExportOptions

    warnings: list[str] = []
    shown = str(path.resolve())
    if target == "github-actions":
        shown, root, found = deploy.repository_path(path)
        if not found:
            warnings.append(f"github-actions: {path} is in no git repository: the workflow "
                            f"names it {shown!r}, from the current directory")  # fmt: skip
        if install is None and not deploy.installs_rolechain(root):
            warnings.append(f"github-actions: {root} is not rolechain's source, so 'pip install "
                            ".' there will not install rolechain (it is not on PyPI): commit a "
                            "wheel and pass --install PATH.whl")  # fmt: skip
        if install is not None and Path(install).is_file():
            install = deploy.repository_path(Path(install))[0]
    executable = command
    if executable is None and target in ("cron", "systemd"):
        executable = deploy.default_command()
    options = ExportOptions(
        shown,
        store=store,
        rolechain=executable or "rolechain",
        image=image or deploy.default_image(),
        install=install or ".",
        chain_is_dir=path.is_dir(),
    )
    if command is not None and not Path(command).is_file():
        warnings.append(f"{target}: --command {command} does not exist on this machine")
    return options, warnings


def _leader_line(store: Location) -> str:
    """Who leads the replicas on ``store``: host, pid, since when, and when its lease runs
    out unless renewed."""
    from rolechain.scheduler.lease import Database, read_leader

    db = Database(str(store), application_name="rolechain-schedule-list")
    try:
        found = read_leader(db)
    finally:
        db.close()
    if found is None or found.holder is None:
        return "leader: none (no scheduler holds the lease)"
    return (
        f"leader: {found.host} pid {found.pid}, since {found.acquired_at}; lease renewed "
        f"{found.renewed_at}, runs out {found.expires_at} unless renewed "
        f"(lease {found.lease_seconds:g}s)"
    )


def _last_run(database: Any, job: str, store: Location | None) -> str:
    if store is None:
        return "(no --store given)"
    if database is None:
        return f"none ({store_name(store)} does not exist yet)"
    runs = [r for r in database.runs(job=job, limit=50) if r["status"] != "skipped"]
    if not runs:
        return "none recorded"
    r = runs[0]
    when = r["started_at"] or r["scheduled_for"] or ""
    counts = f", {r['targets_ok'] or 0}/{r['targets'] or 0} targets ok" if r["targets"] else ""
    return f"{r['run_id']} {r['status']} at {when} ({r['trigger']}){counts}"


@schedule.command("export")
@chain_path_argument()
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Choice(["cron", "systemd", "kubernetes", "github-actions"]),
    help="The scheduler to write definitions for.",
)
@click.option(
    "--job",
    "-j",
    "jobs",
    multiple=True,
    metavar="JOB",
    help="Only these jobs (repeatable) [default: every job with a schedule].",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Write one file per definition into DIR [default: stdout].",
)
@click.option(
    "--store",
    "store",
    default="/var/lib/rolechain/runs.db",
    show_default=True,
    help="The --store the generated commands write to.",
)
@click.option(
    "--image",
    default=None,
    metavar="IMAGE",
    help="kubernetes: the container image, built by 'make image' and pushed to your "
    "registry [default: rolechain:VERSION, as 'make image' tags it].",
)
@click.option(
    "--command",
    "command",
    default=None,
    metavar="PATH",
    help="cron, systemd: the absolute path of rolechain where the file runs [default: the "
    "rolechain running this export].",
)
@click.option(
    "--install",
    default=None,
    metavar="SPEC",
    help="github-actions: what the workflow pip-installs rolechain from (rolechain is not on "
    "PyPI): a wheel in the repository, or a pip requirement [default: '.', the checkout].",
)
@handle_errors
def export(
    path: Path,
    target: str,
    jobs: tuple[str, ...],
    output: Path | None,
    store: str,
    image: str | None,
    command: str | None,
    install: str | None,
) -> None:
    """Write each scheduled job of PATH as a cron line, a systemd .service and .timer, a
    Kubernetes CronJob or a GitHub Actions workflow, running 'rolechain run PATH --job J
    --store STORE' with the same cron, zone, overlap policy and deadline where the target
    supports them. What a target cannot express is written as a comment and printed as a
    warning on stderr (see docs/scheduling.md for the table). Each file says in its header
    which paths it expects where it runs.

    \b
    Example:
      rolechain schedule export chains/demo.yaml --to cron
      rolechain schedule export chains/demo.yaml --to systemd --output deploy/systemd
      rolechain schedule export chains/demo.yaml --to kubernetes --job nightly
    """
    from rolechain.model.loader import load
    from rolechain.scheduler.policy import schedule_specs

    chain = load(path)
    specs = schedule_specs(chain, jobs)
    if not specs:
        from rolechain.errors import UsageError

        raise UsageError(f"no job in {path} has a 'schedule'")
    options, warnings = _export_options(path, target, store, image, command, install)
    from rolechain.scheduler.export import export as make

    exported = make(chain, specs, target, options)
    for warning in [*warnings, *exported.warnings]:
        click.echo(f"warning: {warning}", err=True)
    if output is None:
        for name, text in exported.files.items():
            if len(exported.files) > 1:
                click.echo(f"# ---- {name}")
            click.echo(text.rstrip("\n"))
        return
    from rolechain.private import write_private

    for name, text in exported.files.items():
        write_private(output / name, text.rstrip("\n") + "\n")  # 0600, never via a link
        click.echo(f"wrote {output / name}", err=True)
