"""One run context: every entry point builds its policy, limiter, identity check, discovery
and hop tree the same way, in :mod:`rolechain.executor.context`."""

from __future__ import annotations

from typing import Any

import pytest

import rolechain.executor.context as context_module
from aws.fakes import FakeClock, acct, fake_for, hub_plan
from rolechain.aws.assumer import Assumer
from rolechain.aws.pacer import Pacer
from rolechain.credentials.cache import CredentialCache
from rolechain.credentials.process import target_credentials
from rolechain.executor import RunContext, RunOptions, run, sessions
from rolechain.model.loader import loads
from rolechain.planner.plan import Plan, RunSettings

from .moto_helpers import ROOT, assume, private_sessions
from .test_api import ACCOUNTS, CHAIN


class CountingLimiter:
    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self) -> None:
        self.acquired += 1


def test_options_are_plain_frozen_data() -> None:
    options = RunOptions(targets=["a", "b"], regions="eu-west-1", concurrency=4)  # type: ignore[arg-type]
    assert options.targets == ("a", "b")
    assert options.regions == ("eu-west-1",)
    with pytest.raises(AttributeError):
        options.grace = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="concurrency"):
        RunOptions(concurrency=0)
    plan = hub_plan([acct(1)], concurrency=7)
    assert RunContext(plan).concurrency == 7
    assert RunContext(plan, options=options).concurrency == 4


def test_building_a_context_calls_nothing() -> None:
    plan = hub_plan([acct(1)])
    clock = FakeClock()
    fake = fake_for(plan, clock)
    context = RunContext(plan, None, RunOptions(check_identity=False), assumer=fake, clock=clock)
    assert not context.prepared
    assert sum(fake.calls.values()) == 0
    with pytest.raises(RuntimeError, match="prepare"):
        context.tree  # noqa: B018
    context = RunContext(
        plan, None, RunOptions(check_identity=False), credentials=ROOT, assumer=fake, clock=clock
    )
    assert context.prepare() is context
    assert context.prepare() is context  # once
    creds = context.credentials_for(f"audit@{acct(1)}")
    assert fake.session_role(creds) == plan.hops[1].role_arn
    assert context.stats is fake.stats  # a fake's own counters are the run's


def test_the_limiter_is_built_in_one_place_and_can_be_replaced(aws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    built: list[CountingLimiter] = []

    def counting(settings: Any, *, share: float = 1.0) -> CountingLimiter:
        limiter = CountingLimiter()
        built.append(limiter)
        return limiter

    monkeypatch.setattr(context_module, "default_pacer", counting)
    chain = loads(CHAIN, file="chain.yaml")
    target = f"audit@{ACCOUNTS[0]}"
    assert len(list(run(chain, "whoami", targets=[target]))) == 2
    sessions(chain, "whoami", targets=[target]).client("sts", target)
    target_credentials(chain, target, job="whoami")  # the credentials commands' path
    assert [limiter.acquired for limiter in built] == [2, 2, 2]  # hub + the target, each
    own = CountingLimiter()
    plan = RunContext.for_job(chain, "whoami", RunOptions(targets=(target,))).plan
    RunContext(plan, chain, limiter=own).credentials_for(target)
    assert own.acquired == 2


def test_the_default_pacer_adapts_under_the_chains_assume_rate() -> None:
    pacer = context_module.default_pacer(RunSettings(assume_rate=25))
    assert isinstance(pacer, Pacer)
    assert pacer.ceiling == 25
    assert pacer.rate("111111111111") == 25  # a ceiling: paced at it from the start
    auto = context_module.default_pacer(RunSettings())
    assert auto.ceiling is None
    assert auto.rate("111111111111") is None  # auto: not paced until STS throttles
    assert context_module.default_pacer(RunSettings(assume_rate=25), share=0.5).ceiling == 12.5
    with pytest.raises(ValueError, match="share"):
        context_module.default_pacer(RunSettings(), share=0)


def test_assume_role_is_paced_per_calling_account(aws) -> None:  # type: ignore[no-untyped-def]
    # The hub is assumed with the principal's keys (charged to the principal's account),
    # every target with the hub's (charged to the hub's account).
    chain = loads(CHAIN, file="chain.yaml")
    context = RunContext.for_job(chain, "whoami", RunOptions(targets=(f"audit@{ACCOUNTS[0]}",)))
    assert isinstance(context.pacer, Pacer)
    context.credentials_for(f"audit@{ACCOUNTS[0]}")
    assert context.identity is not None
    plan = context.plan
    hub, leaf = plan.hops[0], plan.hops[1]
    assert context.calling_account(hub) == context.identity.account
    assert context.calling_account(leaf) == hub.account_id
    calls = {lane["key"]: lane["calls"] for lane in context.pacing_report()}
    assert calls == {context.identity.account: 1, hub.account_id: 1}


def test_an_assumer_wrapper_sees_the_plan_the_context_settled_on(aws, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Session keys for a principal declared as user keys: the identity check re-plans with
    # chained first hops, and the wrapper (the credential cache, say) keys hops by that plan.
    text = CHAIN.replace("trusts: [ci]", "trusts: [ci]\n    max_session_duration: 2h")
    chain = loads(text, file="chain.yaml")
    role_session = assume(private_sessions(), "123456789012", "ci")
    seen: list[Plan] = []

    def wrap(inner: Assumer, plan: Plan) -> Assumer:
        seen.append(plan)
        return inner

    target = f"audit@{ACCOUNTS[0]}"
    context = RunContext.for_job(
        chain, "whoami", RunOptions(targets=(target,)), credentials=role_session, wrap_assumer=wrap
    )
    assert context.plan.principal_kind == "user"
    context.credentials_for(target)
    assert [p.principal_kind for p in seen] == ["session"]
    assert context.plan is seen[0]
    # The credentials commands go through the same context, cache and all.
    cache = CredentialCache(tmp_path / "cache")
    found = target_credentials(chain, target, job="whoami", cache=cache, root=role_session)
    assert found.notes
    assert "planned again" in found.notes[-1]
    assert len(list(cache.entries())) == 2


def test_session_factory_warms_the_models_before_user_threads_ask(aws) -> None:  # type: ignore[no-untyped-def]
    chain = loads(CHAIN, file="chain.yaml")
    factory = sessions(chain, "inventory")
    warmed = factory.context.sessions._warmed
    assert not warmed
    assert factory.targets  # first use: identity, hop tree, and the warm-up
    assert {"sts", "s3"} <= warmed


def test_first_hops_are_paced_for_the_declared_principal_without_an_identity_check() -> None:
    import dataclasses

    from aws.fakes import HUB_ACCOUNT

    plan = hub_plan([acct(1)])
    options = RunOptions(check_identity=False)
    unknown = RunContext(dataclasses.replace(plan, principal_arn=None), None, options)
    assert unknown.calling_account(plan.hops[0]) == "principal"  # one lane for them all
    declared = "arn:aws:iam::444455556666:user/ci"
    context = RunContext(dataclasses.replace(plan, principal_arn=declared), None, options)
    assert context.calling_account(plan.hops[0]) == "444455556666"
    assert context.calling_account(plan.hops[1]) == HUB_ACCOUNT
    # A pacer given to the run (shared between runs, or a cluster's) is used as it is; a
    # plain limiter paces without learning.
    shared = Pacer()
    assert RunContext(plan, None, options, limiter=shared).pacer is shared
    plain = RunContext(plan, None, options, limiter=CountingLimiter()).pacer
    plain.acquire("111111111111")
    plain.record(None, throttled=True)
    assert plain.limiter.acquired == 1  # type: ignore[attr-defined]
