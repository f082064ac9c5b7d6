"""The public API: rolechain.run / rolechain.sessions with real chain files, against moto."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

import rolechain
from aws.fakes import FakeClock
from rolechain.aws.session import AwsSessions
from rolechain.errors import ChainFileError, PlanError
from rolechain.executor import Record, Run, SessionFactory, Summary, run, sessions
from rolechain.model.loader import loads
from rolechain.planner.plan import Plan

from .moto_helpers import ROOT, ExpiryEnforcer, assume, create_buckets, private_sessions

HUB = "111111111111"
ACCOUNTS = ["222222222201", "222222222202", "222222222203"]

CHAIN = f"""
settings:
  assume_rate: 1000
  retry: {{attempts: 3, initial_wait: 0.001, max_wait: 1}}
principals:
  ci: {{source: env, kind: user, account: "123456789012"}}
roles:
  hub:
    arn: arn:aws:iam::{HUB}:role/hub
    trusts: [ci]
role_sets:
  audit:
    role_name: audit
    accounts: {ACCOUNTS}
    trusts: [hub]
jobs:
  inventory:
    from: ci
    to: audit
    tasks: [s3.list_buckets]
  whoami:
    from: ci
    to: audit
    regions: [us-east-1, eu-west-1]
    tasks: [sts.get_caller_identity]
"""


def chain(text: str = CHAIN) -> Any:
    return loads(text, file="chain.yaml")


def test_top_level_exports() -> None:
    assert rolechain.run is run
    assert rolechain.sessions is sessions


def test_run_a_chain_file(aws) -> None:  # type: ignore[no-untyped-def]
    made = create_buckets(ACCOUNTS, lambda i: i + 1)
    result = run(chain(), "inventory")
    assert isinstance(result, Run)
    assert isinstance(result.plan, Plan)
    records = list(result)
    assert all(isinstance(r, Record) for r in records)
    assert {r.account_id: [b["name"] for b in r.data["buckets"]] for r in records} == made
    summary = result.summary
    assert isinstance(summary, Summary)
    assert summary.assume_calls == result.plan.assume_calls == 4
    assert summary.ok
    assert summary.targets_ok == 3
    assert summary.finished_at is not None


def test_run_is_iterated_once(aws) -> None:  # type: ignore[no-untyped-def]
    result = run(chain(), "whoami", targets=[f"audit@{ACCOUNTS[0]}"])
    assert len(list(result)) == 2
    with pytest.raises(RuntimeError):
        iter(result)


def test_invalid_chain_or_plan_raises_before_any_call(aws) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ChainFileError):
        loads("roles: {hub: {arn: nope}}", file="bad.yaml")
    bad = CHAIN.replace("trusts: [hub]", "trusts: [nobody-at-all]")
    with pytest.raises((PlanError, ChainFileError)) as info:
        run(chain(bad), "inventory")
    assert info.value.exit_code == 2


def test_session_credentials_replan_as_chained(aws) -> None:  # type: ignore[no-untyped-def]
    text = CHAIN.replace("trusts: [ci]", "trusts: [ci]\n    max_session_duration: 2h")
    sessions_ = AwsSessions()
    role_session = assume(sessions_, "123456789012", "ci")
    result = run(chain(text), "whoami", targets=[f"audit@{ACCOUNTS[0]}"], credentials=role_session)
    assert result.plan.hop("ci>hub").duration_seconds == 7200  # planned for user keys
    records = list(result)
    assert all(r.status == "ok" for r in records)
    assert result.plan.principal_kind == "session"  # re-planned after GetCallerIdentity
    hub = next(h for h in result.plan.hops if h.parent is None)
    assert hub.chained
    assert hub.duration_seconds == 3600


def test_session_factory(aws) -> None:  # type: ignore[no-untyped-def]
    made = create_buckets(ACCOUNTS, lambda i: 1)
    factory = sessions(chain(), "inventory")
    assert isinstance(factory, SessionFactory)
    assert factory.targets == [f"audit@{a}" for a in ACCOUNTS]
    for account in ACCOUNTS:
        session = factory.session(f"audit@{account}", region="eu-west-1")
        assert session.region_name == "eu-west-1"
        names = [b["Name"] for b in session.client("s3").list_buckets()["Buckets"]]
        assert names == made[account]
    s3 = factory.client("s3", f"audit@{ACCOUNTS[0]}")
    assert s3.list_buckets()["Buckets"][0]["Name"] == made[ACCOUNTS[0]][0]
    assert factory.assume_calls == 4  # the hub once, each account once
    with pytest.raises(rolechain.RolechainError, match="not a target"):
        factory.session("audit@999999999999")


ORG_CHAIN = f"""
settings:
  assume_rate: 1000
principals:
  ci: {{source: env, kind: user, account: "123456789012"}}
roles:
  hub:
    arn: arn:aws:iam::{HUB}:role/hub
    trusts: [ci]
role_sets:
  audit:
    role_name: audit
    trusts: [hub]
    organization:
      via: hub
      ous: [{{ou}}]
      tags: {{env: [prod]}}
      exclude: [{{excluded}}]
jobs:
  inventory:
    from: ci
    to: audit
    tasks: [sts.get_caller_identity]
"""


def make_organization() -> tuple[str, list[str]]:
    """An organization in moto: the workloads OU and six accounts (see the test below)."""
    setup = AwsSessions()
    org = setup.client("organizations", "us-east-1", assume(setup, HUB, "hub"))
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]
    nested = org.create_organizational_unit(ParentId=ou, Name="eu")["OrganizationalUnit"]["Id"]
    ids = []
    for n, (parent, env) in enumerate(
        [
            (ou, "prod"),
            (ou, "prod"),
            (nested, "prod"),
            (nested, "dev"),
            (root, "prod"),
            (ou, "prod"),
        ]
    ):
        account = org.create_account(
            AccountName=f"a{n}", Email=f"a{n}@example.com", Tags=[{"Key": "env", "Value": env}]
        )["CreateAccountStatus"]["AccountId"]
        if parent != root:
            org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=parent)
        ids.append(account)
    return ou, ids


def org_chain(ou: str, ids: list[str], to: str = "audit") -> Any:
    text = ORG_CHAIN.replace("{ou}", ou).replace("{excluded}", f'"{ids[5]}"')
    return chain(text.replace("    to: audit\n", f"    to: {to}\n"))


def test_organizations_discovery_end_to_end(aws) -> None:  # type: ignore[no-untyped-def]
    ou, ids = make_organization()
    faults_sessions = private_sessions()
    result = run(org_chain(ou, ids), "inventory", aws_sessions=faults_sessions)
    assert result.plan.discoveries  # planned with a placeholder until run time
    records = list(result)
    expected = sorted([ids[0], ids[1], ids[2]])  # in the OU tree, env=prod, not excluded
    assert sorted(r.account_id for r in records) == expected
    assert all(r.status == "ok" and r.data["account"] == r.account_id for r in records)
    assert not result.plan.discoveries
    assert result.summary.assume_calls == 1 + 3  # the hub is shared by discovery and targets


def test_an_organizations_glob_matching_no_listed_account_is_an_error_record(aws) -> None:  # type: ignore[no-untyped-def]
    """Issue 20: a glob over an Organizations set is applied to the accounts listed at run
    time; one that matches none of them is a failed target with an error record, never
    every account, and the part that matches still runs."""
    ou, ids = make_organization()
    listed = sorted(ids[:3])  # in the OU tree, env=prod, not excluded
    dev = f"audit@{ids[3]}*"  # a real account of the organization, but env=dev: not listed
    result = run(org_chain(ou, ids), "inventory", targets=[f"audit@{ids[0]}*", dev])
    records = list(result)
    by_target = {r.target: r for r in records}
    assert set(by_target) == {f"audit@{ids[0]}", dev}
    assert by_target[f"audit@{ids[0]}"].ok
    error = by_target[dev].error
    assert by_target[dev].status == "error"
    assert error is not None
    assert error.code == "NoMatchingAccounts"
    assert f"glob '{dev}' matches none of the 3 accounts AWS Organizations listed" in (
        error.message
    )
    assert ", ".join(f"audit@{a}" for a in listed) in error.message
    assert "Fix: " in error.message
    summary = result.summary
    assert (summary.status, summary.targets, summary.targets_ok) == ("failed", 2, 1)
    assert summary.failed_targets == [dev]
    assert [m.selector for m in result.plan.unmatched] == [dev]


def test_an_organizations_to_glob_alone_runs_nothing_and_fails(aws) -> None:  # type: ignore[no-untyped-def]
    ou, ids = make_organization()
    result = run(org_chain(ou, ids, to='"audit@nomatch*"'), "inventory")
    records = list(result)
    assert [(r.target, r.status, r.error and r.error.code) for r in records] == [
        ("audit@nomatch*", "error", "NoMatchingAccounts")
    ]
    assert result.summary.status == "failed"
    assert result.summary.assume_calls == 1  # the hub, to list the accounts; no target


def test_sessions_say_which_glob_matched_no_listed_account(aws) -> None:  # type: ignore[no-untyped-def]
    ou, ids = make_organization()
    factory = sessions(org_chain(ou, ids), "inventory", targets=["audit@*", "audit@nomatch*"])
    assert factory.targets == [f"audit@{a}" for a in sorted(ids[:3])]
    assert [(m.selector, m.code) for m in factory.unmatched] == [
        ("audit@nomatch*", "NoMatchingAccounts")
    ]
    with pytest.raises(rolechain.RolechainError, match="matches none of the 3 accounts"):
        factory.credentials("audit@nomatch*")


def test_hours_long_run_against_moto_with_compressed_time(aws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Four hours of work through 15-minute chained sessions, time compressed by a fake
    clock; an enforcer rejects requests signed with expired keys as AWS would."""
    from datetime import UTC, datetime

    from aws.fakes import chain_plan
    from rolechain.planner.plan import TaskRef

    clock = FakeClock(datetime.now(UTC))
    enforcer = ExpiryEnforcer(clock)

    def tick(session: Any, context: Any) -> str:
        clock.advance(60)
        return str(session.client("sts").get_caller_identity()["Arn"])

    module = types.ModuleType("rc_test_tick")
    module.tick = tick  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rc_test_tick", module)
    tasks = tuple(
        TaskRef(f"t{i:03d}", "python", (("function", "rc_test_tick:tick"),)) for i in range(240)
    )
    plan = chain_plan(3, tasks=tasks, duration=900)
    import botocore.session

    session = botocore.session.Session()
    enforcer.install(session)
    result = run(
        plan,
        credentials=ROOT,
        clock=clock,
        concurrency=1,
        aws_sessions=AwsSessions(botocore_session=session),
    )
    records = list(result)
    assert len(records) == 240
    assert [r.error for r in records if r.status != "ok"] == []
    assert enforcer.rejected == 0
    # 15-minute sessions refresh with 3m45s left: every 12 minutes, 20 times in 4 hours;
    # all three hops refresh on that schedule, and none more often.
    assert result.tree is not None
    leaf = result.tree.credentials(plan.hops[-1].id)
    assert 18 <= leaf.refreshes <= 21
    assert enforcer.assume_calls == result.summary.assume_calls
    assert result.summary.assume_calls <= 3 * 22


class ListSink:
    def __init__(self) -> None:
        self.started: Plan | None = None
        self.records: list[Record] = []
        self.summary: Summary | None = None

    def start(self, plan: Plan) -> None:
        self.started = plan

    def add(self, record: Record) -> None:
        self.records.append(record)

    def finish(self, summary: Summary) -> None:
        self.summary = summary


def test_store_sink_gets_everything(aws) -> None:  # type: ignore[no-untyped-def]
    sink = ListSink()
    records = list(run(chain(), "whoami", store=sink))
    assert sink.started is not None
    assert sink.records == records
    assert sink.summary is not None
    assert sink.summary.records == 6
