"""``rolechain run`` and ``rolechain history``."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

import click

from rolechain.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORE,
    EXIT_TERMINATED,
    chain_path_argument,
    check_sandbox_options,
    dumps,
    duration,
    duration_or_none,
    echo,
    handle_errors,
    quota_options,
    sandbox_credentials,
    sandbox_environment,
    sandbox_options,
)
from rolechain.cli._jobs import JobOption, check_job
from rolechain.cli._regions import check_regions
from rolechain.cli._store import (
    check_directory,
    from_settings,
    require_existing,
    store_option,
)
from rolechain.errors import printable
from rolechain.locations import Location

if TYPE_CHECKING:
    from rolechain.executor import Run
    from rolechain.executor.options import EngineOptions
    from rolechain.executor.records import Summary
    from rolechain.planner.plan import Hop, Plan


class _Reporter:
    """Progress on stderr: a rich bar on a terminal, plain lines otherwise."""

    def __init__(self, *, quiet: bool, verbose: bool) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.tty = sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None
        self._step = 0
        self.lock = threading.Lock()

    def __enter__(self) -> _Reporter:
        if self.tty and not self.quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def log(self, text: str) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(printable(text), markup=False, highlight=False)
        else:
            echo(text, err=True)

    def plan_ready(self, plan: Plan) -> None:
        """The checked, resolved plan (after the identity check and discovery): its notes,
        then the progress bar for its targets."""
        from rolechain.aws.identity import SESSION_NOTE

        for note in plan.notes:
            if self.verbose:
                self.log(f"note: {note}")
            elif note.kind == SESSION_NOTE:
                self.log(f"warning: {note}")
        for miss in plan.unmatched:  # each is a failed target of the run (an error record)
            self.log(f"error: {miss.message}")
        self.started(plan.job, len(plan.targets) + len(plan.unmatched))

    def started(self, job: str, targets: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(job, total=targets, failed=0)
        elif not self.quiet:
            self.log(f"running job {job}: {targets} target{'s' if targets != 1 else ''}")

    def target_done(self, target: str, ok: bool, done: int, total: int) -> None:
        if self._progress is not None:
            if self._task is None:
                self._task = self._progress.add_task("run", total=total, failed=0)
            failed = self._progress.tasks[self._task].fields["failed"] + (0 if ok else 1)
            self._progress.update(self._task, completed=done, total=total, failed=failed)
            if not ok and self.verbose:
                self.log(f"failed: {target}")
            return
        if self.quiet:
            return
        if self.verbose or not ok:
            self.log(f"[{done}/{total}] {target}: {'ok' if ok else 'FAILED'}")
        step = max(1, total // 10)
        if done // step > self._step or done == total:
            self._step = done // step
            if not self.verbose:
                self.log(f"progress: {done}/{total} targets")

    def pause(self) -> contextlib.AbstractContextManager[Any]:
        if self._progress is not None:
            return _paused(self._progress)
        return contextlib.nullcontext()


@contextlib.contextmanager
def _paused(progress: Any) -> Iterator[None]:
    progress.stop()
    try:
        yield
    finally:
        progress.start()


def _token_provider(reporter: _Reporter) -> Any:
    """Prompt for MFA codes on a terminal; None (unattended) otherwise."""
    if not sys.stdin.isatty():
        return None

    def ask(hop: Hop) -> str:
        with reporter.lock, reporter.pause():
            code: str = click.prompt(
                printable(f"MFA code for {hop.mfa_serial} ({hop.label})"),
                err=True,
                hide_input=False,
            )
        return code.strip()

    return ask


def _open_output(output: Path | None) -> IO[str]:
    if output is None:
        return sys.stdout
    return output.open("w", encoding="utf-8", newline="")


class _StopOnSignals:
    """SIGINT and SIGTERM cancel the run; a second one stops it at once.

    The handler only calls :meth:`Run.cancel` (signal-safe) and writes one line straight to
    file descriptor 2 (a buffered stream could be in the middle of a write).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, execution: Run, *, quiet: bool) -> None:
        self.execution = execution
        self.quiet = quiet
        self.received: signal.Signals | None = None
        self._saved: dict[signal.Signals, Any] = {}

    def __enter__(self) -> _StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signal.Signals(signum)
            self.execution.cancel(name)
            text = (
                f"\n{name}: stopping; tasks in flight have {self.execution.grace:g}s to finish "
                "(send it again to stop now)\n"
            )
        else:
            self.execution.cancel(name, grace=0)
            text = f"\n{name}: stopping now\n"
        if not self.quiet:
            with contextlib.suppress(OSError):
                os.write(2, text.encode())

    def exit_status(self, summary: Summary, *, store_failed: bool = False) -> int:
        if summary.stop == "interrupted":
            return EXIT_TERMINATED if self.received == signal.SIGTERM else EXIT_INTERRUPTED
        if store_failed:
            return EXIT_STORE
        return EXIT_OK if summary.ok else EXIT_FAILED


@click.command()
@chain_path_argument()
@click.option("--job", "-j", required=True, cls=JobOption, help="The job to run.")
@click.option(
    "--target",
    "-t",
    "targets",
    multiple=True,
    metavar="TARGET",
    help="Only these targets of the job (names or globs such as 'audit@1111*'). Repeatable.",
)
@click.option(
    "--region",
    "-r",
    "regions",
    multiple=True,
    metavar="REGION",
    help="Run tasks in these regions instead of the job's ('all': every enabled region). "
    "Repeatable. A task's own 'regions' still win.",
    callback=check_regions,
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 1024),
    default=None,
    help="Targets worked at once [default: the job's, else settings, else 16].",
)
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["table", "json", "jsonl", "csv"]),
    default=None,
    help="Output format [default: table on a terminal, jsonl otherwise]. jsonl streams "
    "a line per result as it arrives.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write results to FILE instead of stdout.",
)
@store_option(
    help="Record the run and its results in this store (query it with SQL; see "
    "'rolechain history').",
    settings=True,
)
@click.option(
    "--resume",
    "resume_id",
    metavar="RUN_ID",
    default=None,
    help="With --store: run only the units of RUN_ID (a crashed, interrupted or "
    "deadline-exceeded run of this job) that have no final record. Refused (exit 2) if the "
    "chain file changed the job since.",
)
@click.option(
    "--retry-failed",
    "retry_id",
    metavar="RUN_ID",
    default=None,
    help="With --store: run again the units of RUN_ID that failed or did not finish.",
)
@click.option(
    "--deadline",
    callback=duration_or_none,
    metavar="DURATION",
    help="Bound the whole run ('30m', '2h'; 'none': no bound). At the deadline, running "
    "tasks get a TaskTimeout record, tasks not started a DeadlineExceeded record, and the "
    "run exits 1. [default: the job's runtime, if it has one]",
)
@click.option(
    "--grace",
    callback=duration,
    default="10s",
    show_default=True,
    metavar="DURATION",
    help="On SIGINT/SIGTERM, how long tasks in flight may finish before the rest is "
    "marked Interrupted.",
)
@click.option(
    "--engine",
    type=click.Choice(["threads", "dask"]),
    default=None,
    help="Where tasks run: a thread pool in this process, or batches on a Dask cluster "
    "(pip install 'rolechain[dask]'). [default: settings.engine, else threads]",
)
@click.option(
    "--cluster",
    metavar="ADDRESS",
    default=None,
    help="With the dask engine: an existing Dask scheduler (tcp://HOST:8786 or "
    "tls://HOST:8786). Implies --engine dask.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 1024),
    default=None,
    metavar="N",
    help="With the dask engine: start a local cluster of N worker processes for the run "
    "[default: one per core]. Implies --engine dask.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=None,
    metavar="N",
    help="With the dask engine: targets per Dask task [default: chosen from the targets, "
    "workers and concurrency].",
)
@click.option(
    "--ship-credentials",
    is_flag=True,
    help="With the dask engine: send the principal's credentials to the workers instead of "
    "each worker starting from its own environment. Refused unless the connection is TLS.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary on stderr.")
@click.option("--verbose", "-v", is_flag=True, help="A line per target on stderr.")
@sandbox_options(what="Run", provision="instead (rehearse PATH against what is really deployed).")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    metavar="N",
    help="With --sandbox: sandbox time runs N times faster (sessions expire sooner).",
)
@quota_options
@handle_errors
def run(
    path: Path,
    job: str,
    targets: tuple[str, ...],
    regions: tuple[str, ...],
    concurrency: int | None,
    fmt: str | None,
    output: Path | None,
    store: Location | None,
    resume_id: str | None,
    retry_id: str | None,
    deadline: float | None,
    grace: int,
    engine: str | None,
    cluster: str | None,
    workers: int | None,
    batch_size: int | None,
    ship_credentials: bool,
    quiet: bool,
    verbose: bool,
    use_sandbox: bool,
    provision: Path | None,
    time_scale: float,
    sts_rate: tuple[float, float | None] | None,
    connect_latency: float,
) -> None:
    """Run a job: assume every hop once, run its tasks in every target and region.

    Results stream out as they finish, one record per (target, region, task). Each hop
    is assumed once and shared by every target below it, refreshed before it expires,
    and transient AWS errors are retried with backoff. A target that fails (a hop or a
    task) gets an error record; the others carry on.

    SIGINT (Ctrl-C) or SIGTERM stops the run: no new task starts, tasks in flight get
    --grace to finish, then every finished record is written (stdout, --output, --store)
    and the rest is recorded as Interrupted. A second signal stops at once.

    --engine dask runs batches of targets on a Dask cluster (--workers N local processes,
    or --cluster ADDRESS): each worker starts from the principal in its own environment,
    and only this process writes the records.

    With --store, each record is committed to the store before it is printed, and the run's
    row (pid, host, heartbeat) is written when it starts: a run killed outright shows as
    'crashed' in 'rolechain history', and --resume RUN_ID runs only its missing units.

    Exit status: 0 every target ok; 1 some target failed, or the --deadline passed; 2 the
    chain file or plan is invalid, the engine cannot be used, or --resume refused (nothing
    was called); 3 the run went on but --store could not be written (disk full, read-only,
    locked): its records are on stdout/--output only; 130 SIGINT; 143 SIGTERM.

    \b
    Example:
      rolechain run chains/org-inventory.yaml --job inventory
      rolechain run chains/org-inventory.yaml -j legacy-buckets -t 'legacy@5*' \\
          --format jsonl --output inventory.jsonl --store runs.db
      rolechain run chains/demo.yaml --job inventory --sandbox --time-scale 60
      rolechain run chains/org-inventory.yaml -j inventory --engine dask --workers 4
      rolechain run chains/demo.yaml -j inventory --store runs.db --resume RUN_ID
    """
    from rolechain.model.loader import load

    check_sandbox_options(
        use_sandbox,
        provision=provision is not None,
        time_scale=time_scale != 1.0,
        sts_rate=sts_rate is not None,
        connect_latency=bool(connect_latency),
    )
    if resume_id and retry_id:
        raise click.UsageError("give --resume or --retry-failed, not both")
    chain = load(path)
    store = from_settings(store, chain)
    if (resume_id or retry_id) and store is None:
        raise click.UsageError("--resume and --retry-failed need --store (the run's records)")
    check_job(chain, job)  # before a sandbox or a cluster starts
    if store is not None:
        check_directory(store)
    chosen = _engine(chain, engine, cluster, workers, batch_size, ship_credentials)
    if fmt is None:
        fmt = "table" if (output is None and sys.stdout.isatty()) else "jsonl"

    with contextlib.ExitStack() as stack:
        credentials = None
        if use_sandbox:
            from rolechain.sandbox import Faults

            faults = Faults(
                sts_rate=sts_rate[0] if sts_rate else None,
                sts_burst=sts_rate[1] if sts_rate else None,
                connect_latency=connect_latency / 1000.0,
            )
            principal = chain.model.jobs[job].from_ if job in chain.model.jobs else None
            # The sandbox's keys win over a profile or token in the environment (local Dask
            # workers are started with them in theirs).
            info = stack.enter_context(
                sandbox_environment(
                    chain, provision, principal=principal, time_scale=time_scale, faults=faults
                )
            )
            env = info.principals.get(principal, info.env) if principal else info.env
            remote = _engine_of(chain, chosen)
            if remote.cluster is not None and not remote.ship_credentials:
                # Workers elsewhere must reach the sandbox as its principal themselves.
                chosen = replace(remote, worker_source="env")
            else:
                credentials = sandbox_credentials(env)
            if not quiet:
                echo(f"sandbox: {info.endpoint}", err=True)
        status = _run(
            chain,
            job,
            targets=targets,
            regions=regions,
            concurrency=concurrency,
            deadline=deadline,
            grace=grace,
            fmt=fmt,
            output=output,
            store=store,
            quiet=quiet,
            verbose=verbose,
            credentials=credentials,
            engine=chosen,
            continues=(retry_id, True) if retry_id else (resume_id, False) if resume_id else None,
        )
    sys.exit(status)


def _engine(
    chain: Any,
    engine: str | None,
    cluster: str | None,
    workers: int | None,
    batch_size: int | None,
    ship_credentials: bool,
) -> EngineOptions | None:
    """The engine the options ask for (None: as the chain file's settings say)."""
    from rolechain.executor.options import EngineOptions

    if engine is None and (cluster is not None or workers is not None):
        engine = "dask"
    dask_options = cluster, workers, batch_size
    if not ship_credentials and all(v is None for v in dask_options):
        return EngineOptions(kind=engine) if engine is not None else None  # type: ignore[arg-type]
    kind = engine or chain.model.settings.engine.kind
    if kind != "dask":
        raise click.UsageError(
            "--cluster, --workers, --batch-size and --ship-credentials need --engine dask"
        )
    if cluster is not None and workers is not None:
        raise click.UsageError("give --cluster (an existing scheduler) or --workers, not both")
    try:
        return EngineOptions(
            kind="dask",
            cluster=cluster,
            workers=workers,
            batch_size=batch_size,
            ship_credentials=ship_credentials,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _engine_of(chain: Any, chosen: EngineOptions | None) -> EngineOptions:
    """The engine the run will have: what the options ask, completed by the chain file's
    settings, as the run's context chooses it (:func:`choose_engine`)."""
    from rolechain.executor.options import choose_engine
    from rolechain.planner.planner import run_settings

    return choose_engine(run_settings(chain.model.settings), chosen)


def _run(
    chain: Any,
    job: str,
    *,
    targets: tuple[str, ...],
    regions: tuple[str, ...],
    concurrency: int | None,
    deadline: float | None,
    grace: int,
    fmt: str,
    output: Path | None,
    store: Location | None,
    quiet: bool,
    verbose: bool,
    credentials: Any,
    engine: EngineOptions | None = None,
    continues: tuple[str, bool] | None = None,
) -> int:
    """Run the job, write its records and summary; the exit status."""
    from rolechain.executor import run as start_run
    from rolechain.results.formatters import summary_lines, writer_for
    from rolechain.results.store import Store

    reporter = _Reporter(quiet=quiet, verbose=verbose)
    new_store = isinstance(store, Path) and not store.exists()
    database = Store(store, on_error=_store_failed(reporter)) if store is not None else None
    skip: frozenset[tuple[str, str, str]] = frozenset()
    try:
        if database is not None:
            _say_crashed(database.crashed, reporter)
        if continues is not None:
            assert database is not None
            resumed = _resumption(chain, job, targets, database, *continues)
            if not resumed.targets:
                reporter.log(f"run {resumed.run_id}: every unit has a final record; nothing to run")
                return EXIT_OK
            reporter.log(
                f"{resumed.trigger} of run {resumed.run_id}: {resumed.missing} unit"
                f"{'s' if resumed.missing != 1 else ''} on {len(resumed.targets)} target"
                f"{'s' if len(resumed.targets) != 1 else ''}"
            )
            database.lineage(resumed.trigger, resumed.run_id, resumed.skip)
            targets, skip = resumed.targets, resumed.skip
        execution = start_run(
            chain,
            job,
            skip=skip,
            targets=list(targets) or None,
            regions=list(regions) or None,
            concurrency=concurrency,
            deadline=deadline,
            grace=grace,
            store=database,
            credentials=credentials,
            token_provider=_token_provider(reporter),
            progress=reporter.target_done,
            on_plan=reporter.plan_ready,
            engine=engine,
        )
        stream = _open_output(output)
        writer = writer_for(fmt, stream, color=None if stream.isatty() else False)
        signals = _StopOnSignals(execution, quiet=quiet)
        try:
            with reporter, signals:
                if verbose and execution.engine.kind != "threads":
                    reporter.log(f"engine: {execution.engine.describe()}")
                for record in execution:
                    writer.write(record)
        finally:
            # After the progress bar is gone: a table is drawn now, files are flushed.
            writer.close(execution.summary)
            if stream is not sys.stdout:
                stream.close()
    except BaseException:
        if database is not None and new_store and not database.runs(limit=1):
            # A run that could not start leaves no empty database behind.
            database.close()
            database = None
            assert isinstance(store, Path)
            for leftover in (store, *(Path(f"{store}{end}") for end in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
        raise
    finally:
        if database is not None:
            database.close()
    if not quiet:
        for line in summary_lines(execution.summary):
            echo(line, err=True)
    failed = database is not None and database.failure is not None
    return signals.exit_status(execution.summary, store_failed=failed)


def _store_failed(reporter: _Reporter) -> Any:
    """Say, once, when it happens, that the store cannot be written (the run goes on);
    said even with --quiet: it is an error, not progress."""

    def say(failure: Any) -> None:
        if reporter.quiet:
            echo(f"error: {failure}", err=True)
        else:
            reporter.log(f"error: {failure}")

    return say


def _say_crashed(crashed: list[dict[str, Any]], reporter: _Reporter) -> None:
    for run in crashed:
        left = run.get("unfinished")
        reporter.log(
            f"warning: run {run['run_id']} of job {run['job']} crashed (its process "
            f"{run.get('host')}/{run.get('pid')} ended without finishing it)"
            + (f"; {left} unit{'s' if left != 1 else ''} without a record" if left else "")
            + f": 'rolechain run ... --job {run['job']} --resume {run['run_id']}' runs them"
        )


def _resumption(
    chain: Any, job: str, targets: tuple[str, ...], database: Any, run_id: str, failed_too: bool
) -> Any:
    """What --resume/--retry-failed runs (checked against the job planned now, offline)."""
    from rolechain.planner import plan as make_plan
    from rolechain.results.resume import resumption

    plan = make_plan(chain, job, targets=list(targets) or None, run_id=run_id)
    return resumption(database, run_id, job, plan, failed_too=failed_too)


@click.command()
@store_option(required=True, help="The store given to 'rolechain run --store'.")
@click.option("--job", "-j", default=None, help="Only runs of this job.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    help="Only runs that ended so (ok, failed, interrupted, deadline-exceeded, error, ...); "
    "repeatable.",
)
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Only runs started since: a duration back from now ('2h', '7d') or a UTC date/time.",
)
@click.option("--limit", "-n", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--run",
    "run_id",
    default=None,
    metavar="ID",
    help="Show one run: its counts, and its failures grouped by error code.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@handle_errors
def history(
    store: Location,
    job: str | None,
    statuses: tuple[str, ...],
    since: str | None,
    limit: int,
    run_id: str | None,
    fmt: str,
) -> None:
    """List runs recorded with --store, newest first; --run ID shows one.

    Times are UTC. Each run's records are in the same database, in table 'records' (data
    as JSON text).

    \b
    Example:
      rolechain history --store runs.db --job inventory
      rolechain history --store runs.db --status failed --since 7d
      sqlite3 runs.db "SELECT account_id, data FROM records WHERE task='s3.list_buckets'"
    """
    from rolechain.cli import _history as view
    from rolechain.errors import UsageError
    from rolechain.results.store import Store

    require_existing(store)
    try:
        cutoff = view.since_cutoff(since) if since else None
    except ValueError:
        raise click.BadParameter(
            f"{since!r} is neither a duration ('2h', '7d') nor a date/time", param_hint="--since"
        ) from None
    with Store(store) as database:
        if run_id is not None:
            detail = view.run_detail(database, run_id)
            if detail is None:
                recent = [r["run_id"] for r in database.runs(limit=5)]
                raise UsageError(
                    f"no run {run_id!r} in {database.name}",
                    hint="recent runs: " + (", ".join(recent) or "none"),
                )
            if fmt == "json":
                echo(dumps(detail))
            else:
                for line in view.detail_lines(detail):
                    echo(printable(line))
            return
        runs = view.select_runs(database, job=job, status=statuses, since=cutoff, limit=limit)
        alerts = database.alert_states([r["run_id"] for r in runs])
        for r in runs:
            r["alert_state"] = alerts.get(r["run_id"])
        alerting = any(r["alert_state"] for r in runs)
        rows = [view.row_cells(database, r, alerting=alerting) for r in runs]
    if fmt == "json":
        echo(dumps(runs))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name, whole in view.columns(alerting=alerting):
        table.add_column(name, no_wrap=whole, overflow="fold")
    for cells in rows:
        table.add_row(*(Text(printable(str(c))) for c in cells))
    wide = sys.stdout.isatty() or "COLUMNS" in os.environ
    Console(width=None if wide else 160).print(table)
    note = view.clock_note(runs)
    if note:
        echo(f"note: {note}", err=True)
    if not runs:
        echo("no runs recorded", err=True)
