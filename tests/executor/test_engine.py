"""The engine seam: which engine a run gets, what the dask engine refuses before anything
runs, the partition into batches, and what must survive the trip to a worker."""

from __future__ import annotations

import dataclasses
import pickle
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

import rolechain
from aws.fakes import FakeClock, acct, fake_for, hub_plan
from rolechain.aws.session import static_credentials
from rolechain.cli import cli
from rolechain.errors import (
    AccessDeniedError,
    AwsContext,
    CredentialsError,
    EngineError,
    PlanError,
    Violation,
)
from rolechain.executor import EngineOptions, RunContext, RunOptions
from rolechain.executor.context import default_pacer
from rolechain.executor.options import DASK_INSTALL, choose_engine
from rolechain.executor.partition import (
    assume_bound,
    batch_plan,
    default_batch_size,
    inner_hops,
    partition,
)
from rolechain.model.loader import loads
from rolechain.planner.plan import RunSettings

DEMO = Path(__file__).resolve().parents[2] / "chains" / "demo.yaml"

TWO_HUBS = """
principals:
  ci: {kind: user, account: "123456789012"}
roles:
  hub-a: {arn: "arn:aws:iam::111111111111:role/hub-a", trusts: [ci]}
  hub-b: {arn: "arn:aws:iam::222222222222:role/hub-b", trusts: [ci]}
  direct: {arn: "arn:aws:iam::333333333333:role/direct", trusts: [ci]}
role_sets:
  a:
    role_name: a
    accounts: [%s]
    trusts: [hub-a]
  b:
    role_name: b
    accounts: [%s]
    trusts: [hub-b]
jobs:
  all: {from: ci, to: [a, b, direct], tasks: [sts.get_caller_identity]}
"""


def two_hubs(a: int = 7, b: int = 5) -> rolechain.Plan:
    text = TWO_HUBS % (
        ", ".join(f'"{400000000000 + i}"' for i in range(a)),
        ", ".join(f'"{500000000000 + i}"' for i in range(b)),
    )
    return rolechain.plan(loads(text, file="hubs.yaml"), "all", run_id="r1")


# -- choosing the engine ------------------------------------------------------------------


def test_the_engine_comes_from_the_options_else_the_chain_files_settings() -> None:
    assert choose_engine(RunSettings()) == EngineOptions()
    declared = RunSettings(engine="dask", engine_cluster="tls://s:8786", engine_batch_size=9)
    assert choose_engine(declared) == EngineOptions("dask", cluster="tls://s:8786", batch_size=9)
    assert choose_engine(declared, "threads") == EngineOptions()
    # Asking for the kind the file names keeps what the caller leaves unset...
    assert choose_engine(declared, "dask").cluster == "tls://s:8786"
    # ...and a local cluster replaces the file's address.
    local = choose_engine(declared, EngineOptions("dask", workers=3))
    assert (local.cluster, local.workers, local.batch_size) == (None, 3, 9)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "spark"}, "unknown engine"),
        ({"kind": "dask", "cluster": "tcp://a:1", "workers": 2}, "not both"),
        ({"kind": "dask", "cluster": "http://a:1"}, "tcp:// or tls://"),
        ({"kind": "threads", "workers": 2}, "only apply to the dask engine"),
        ({"kind": "dask", "batch_size": 0}, "at least 1"),
    ],
)
def test_engine_options_are_checked(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EngineOptions(**options)  # type: ignore[arg-type]


def test_settings_engine_in_a_chain_file() -> None:
    text = DEMO.read_text().replace(
        "  concurrency: 8\n", "  concurrency: 8\n  engine: {kind: dask, workers: 3}\n"
    )
    chain = loads(text, file="demo.yaml")
    plan = rolechain.plan(chain, "inventory")
    assert plan.settings.engine == "dask"
    assert plan.to_dict()["settings"]["engine"] == "dask"
    assert RunContext.for_job(chain, "inventory").engine == EngineOptions("dask", workers=3)
    # A file that names no engine plans exactly as before.
    assert (
        "engine"
        not in rolechain.plan(loads(DEMO.read_text(), file="d"), "whoami").to_dict()["settings"]
    )
    for bad in ("engine: {kind: threads, workers: 2}", "engine: {cluster: 'ftp://x'}"):
        with pytest.raises(rolechain.errors.ChainFileError):
            loads(DEMO.read_text().replace("  concurrency: 8\n", f"  {bad}\n"), file="x")


# -- a missing extra, refused parts ---------------------------------------------------------


@pytest.fixture
def no_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails


@pytest.mark.usefixtures("no_distributed")
def test_a_missing_extra_is_a_clear_error_with_the_install_line() -> None:
    chain = rolechain.load(DEMO)
    with pytest.raises(EngineError) as info:
        rolechain.run(chain, "inventory", engine="dask")
    assert "distributed" in info.value.message
    assert DASK_INSTALL in str(info.value)
    # The chain file's settings choose it too (the scheduler's path: no engine argument).
    text = DEMO.read_text().replace("  concurrency: 8\n", "  concurrency: 8\n  engine: dask\n")
    with pytest.raises(EngineError, match="rolechain\\[dask\\]"):
        rolechain.run(loads(text, file="demo.yaml"), "inventory")


@pytest.mark.usefixtures("no_distributed")
def test_the_cli_says_how_to_install_the_extra_and_exits_2() -> None:
    result = CliRunner().invoke(
        cli, ["run", str(DEMO), "--job", "inventory", "--engine", "dask", "--workers", "2"]
    )
    assert result.exit_code == 2, result.output
    assert "pip install 'rolechain[dask]'" in result.stderr


def test_what_cannot_travel_to_workers_is_refused_before_anything_runs() -> None:
    pytest.importorskip("distributed")
    plan = hub_plan([acct(1)])
    clock = FakeClock()
    with pytest.raises(EngineError, match="assumer=, clock="):
        rolechain.run(plan, engine="dask", assumer=fake_for(plan, clock), clock=clock)
    keys = static_credentials("AKIAEXAMPLEEXAMPLE", "secret")
    remote = EngineOptions("dask", cluster="tcp://127.0.0.1:8786")
    with pytest.raises(EngineError, match="never travel unless asked"):
        rolechain.run(plan, engine=remote, credentials=keys)
    # A local cluster's workers are this machine's processes: they get the keys in their
    # environment when they start, as from a shell.
    assert rolechain.run(plan, engine="dask", credentials=keys).engine.local
    tcp = EngineOptions("dask", cluster="tcp://127.0.0.1:8786", ship_credentials=True)
    with pytest.raises(EngineError, match="not tls://"):
        rolechain.run(plan, engine=tcp, credentials=keys)
    tls = EngineOptions("dask", cluster="tls://127.0.0.1:8786", ship_credentials=True)
    with pytest.raises(EngineError, match="TLS certificates"):
        rolechain.run(plan, engine=tls, credentials=keys)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "threads", "--workers", "2"], "need --engine dask"),
        (["--cluster", "tcp://a:1", "--workers", "2"], "not both"),
        (["--cluster", "http://a:1"], "tcp:// or tls://"),
        (["--ship-credentials"], "need --engine dask"),
        (["--engine", "dask", "--cluster", "tcp://127.0.0.1:1", "--ship-credentials"], "TLS"),
    ],
)
def test_cli_engine_options_are_checked(args: list[str], message: str) -> None:
    pytest.importorskip("distributed")
    result = CliRunner().invoke(cli, ["run", str(DEMO), "--job", "inventory", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


# -- batches ----------------------------------------------------------------------------------


def test_batches_keep_siblings_together_and_every_target_once() -> None:
    plan = two_hubs(a=7, b=5)  # hub-a: 7 members, hub-b: 5, and one direct role
    for size in (1, 3, 5, 6, 7, 12, 100):
        batches = partition(plan, size)
        names = [t.name for batch in batches for t in batch]
        assert Counter(names) == Counter(t.name for t in plan.targets)
        assert all(1 <= len(batch) <= size for batch in batches)
        groups = Counter(t.path[:-1] for t in plan.targets)
        for batch in batches:
            parents = Counter(t.path[:-1] for t in batch)
            # Groups are packed together when they fit; only the last piece of a group
            # too big for one batch shares a batch with other, whole, groups.
            assert sum(groups[p] != n for p, n in parents.items()) <= 1
    # A group that fits is never cut: with 7 per batch, hub-a's members travel together.
    assert any(
        {t.path[:-1] for t in b} == {("ci>hub-a",)} and len(b) == 7 for b in partition(plan, 7)
    )
    assert [len(b) for b in partition(plan, 3)] == [1, 3, 3, 1, 3, 2]
    assert inner_hops(plan) == 2
    assert plan.assume_calls == 15  # 13 targets + 2 hubs
    assert assume_bound(plan, 1) == 15
    assert assume_bound(plan, 4) == 15 + 3 * 2


def test_a_batch_carries_its_targets_and_the_hops_on_their_paths() -> None:
    plan = two_hubs(a=4, b=4)
    [first, *_] = partition(plan, 4)
    part = batch_plan(plan, first)
    assert part.targets == first
    assert {h.id for h in part.hops} == {i for t in first for i in t.path}
    assert [h.id for h in part.hops] == [h.id for h in plan.hops if h in part.hops]
    assert (part.run_id, part.job, part.settings) == (plan.run_id, plan.job, plan.settings)


def test_the_batch_size_is_chosen_from_targets_workers_and_concurrency() -> None:
    assert default_batch_size(200, 2, 16) == 32  # at least twice the concurrency
    assert default_batch_size(10_000, 8, 16) == 313  # four batches per worker
    assert default_batch_size(1_000_000, 2, 16) == 500  # bounded payloads
    assert default_batch_size(3, 8, 1) == 2


# -- what a worker rebuilds ---------------------------------------------------------------


def test_a_workers_context_grows_batch_by_batch_and_keeps_its_hubs() -> None:
    plan = hub_plan([acct(i) for i in range(6)])
    clock = FakeClock()
    fake = fake_for(plan, clock)
    keys = static_credentials("AKIAIOSFODNN7EXAMPLE", "secret")
    first, second = partition(plan, 3)
    context = RunContext(
        batch_plan(plan, first),
        None,
        RunOptions(check_identity=False),
        credentials=keys,
        assumer=fake,
        clock=clock,
    )
    for target in first:
        context.credentials_for(target.name)
    context.extend(batch_plan(plan, second))
    context.extend(batch_plan(plan, first))  # nothing new
    for target in second:
        context.credentials_for(target.name)
    assert [t.name for t in context.plan.targets] == [t.name for t in plan.targets]
    assert fake.stats.assume_calls == 7  # the hub once, each target once
    other = dataclasses.replace(plan, run_id="another")
    with pytest.raises(ValueError, match="another run"):
        context.extend(other)


def test_each_workers_pacer_is_its_share_of_the_rate() -> None:
    pacer = default_pacer(RunSettings(assume_rate=10), share=0.25)
    assert pacer.ceiling == 2.5
    assert default_pacer(RunSettings(), share=0.25).ceiling is None  # it adapts
    with pytest.raises(ValueError, match="share"):
        default_pacer(RunSettings(), share=0)
    pytest.importorskip("distributed")
    from rolechain.aws.pacer import Pacing
    from rolechain.executor.dask.worker import SharedPacing

    pacing = SharedPacing(RunSettings(assume_rate=10), 0.5)
    assert isinstance(pacing, Pacing)
    assert pacing.describe() == "5/s (share 0.5)"
    pacing.use_share(1.0)  # the worker that prepared the run learns its share later
    assert pacing.describe() == "10/s (share 1)"
    assert SharedPacing(RunSettings(), 0.5).describe() == "adaptive (share 0.5)"


def test_errors_survive_the_trip_between_processes() -> None:
    errors = [
        CredentialsError("wrong principal", hint="fix it"),
        AccessDeniedError("no", code="AccessDenied", context=AwsContext(hop="ci -> hub")),
        PlanError("job", [Violation(rule="r", message="m", fix="f")]),
        EngineError("no extra", hint=DASK_INSTALL),
    ]
    for error in errors:
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert (str(back), back.exit_code) == (str(error), error.exit_code)
    assert pickle.loads(pickle.dumps(errors[1])).context.hop == "ci -> hub"
