"""Credentials of a planned target against a moto server: cache hits, hub reuse, jobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials

from rolechain.credentials.cache import CredentialCache
from rolechain.credentials.process import (
    CREDENTIALS_RUN_ID,
    RECURSION_MARKER,
    choose_job,
    jobs_reaching,
    target_credentials,
)
from rolechain.errors import CredentialsError, UsageError
from rolechain.model.chain import Chain
from rolechain.model.loader import loads

from .conftest import MotoServer

CHAIN = """
version: 1
settings:
  region: us-east-1
principals:
  ci:
    source: env
    kind: user
roles:
  hub:
    arn: arn:aws:iam::111111111111:role/hub
    trusts: [ci]
role_sets:
  audit:
    role_name: audit
    accounts: ["222222222222", "333333333333"]
    trusts: [hub]
jobs:
  inventory:
    from: ci
    to: audit
    regions: [eu-west-1]
  hub-only:
    from: ci
    to: hub
  everything:
    from: ci
    to: ["audit@333333333333"]
"""


@pytest.fixture
def chain() -> Chain:
    return loads(CHAIN, file="chain.yaml")


def identity(creds: object) -> str:
    client = boto3.session.Session().client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id=creds.access_key_id,  # type: ignore[attr-defined]
        aws_secret_access_key=creds.secret_access_key,  # type: ignore[attr-defined]
        aws_session_token=creds.session_token,  # type: ignore[attr-defined]
    )
    return str(client.get_caller_identity()["Arn"])


def test_first_call_assumes_the_path_second_is_served_from_cache(
    aws_env: MotoServer, chain: Chain, tmp_path: Path
) -> None:
    cache = CredentialCache(tmp_path / "c")
    first = target_credentials(chain, "audit@222222222222", cache=cache)
    assert aws_env.assume_calls() == 2
    assert (first.from_cache, first.assume_calls) == (False, 2)
    assert first.job == "inventory"
    assert first.region == "eu-west-1"
    assert first.hops == ("ci -> hub", "hub -> audit@222222222222")
    arn = identity(first)
    assert arn.startswith("arn:aws:sts::222222222222:assumed-role/audit/")
    assert arn.endswith(f"rolechain-inventory-{CREDENTIALS_RUN_ID}")

    second = target_credentials(chain, "audit@222222222222", cache=CredentialCache(cache.directory))
    assert aws_env.assume_calls() == 2  # no AssumeRole at all
    assert aws_env.app.count("GetCallerIdentity") == 2  # the check on the miss + identity()
    assert second.from_cache
    assert second.access_key_id == first.access_key_id
    assert second.expiration == first.expiration
    assert len(list(cache.entries())) == 2


def test_second_target_through_the_hub_assumes_only_its_own_hop(
    aws_env: MotoServer, chain: Chain, tmp_path: Path
) -> None:
    cache = CredentialCache(tmp_path / "c")
    target_credentials(chain, "audit@222222222222", cache=cache)
    assert aws_env.assume_calls() == 2
    other = target_credentials(chain, "audit@333333333333", job="inventory", cache=cache)
    assert aws_env.assume_calls() == 3
    assert other.assume_calls == 1
    assert not other.from_cache
    assert identity(other).startswith("arn:aws:sts::333333333333:assumed-role/audit/")
    assert cache.stats.hits == 1  # the hub


def test_no_cache_assumes_every_time(aws_env: MotoServer, chain: Chain, tmp_path: Path) -> None:
    target_credentials(chain, "hub", cache=None)
    target_credentials(chain, "hub", cache=None)
    assert aws_env.assume_calls() == 2
    assert not (tmp_path / "rolechain-cache").exists()


def test_at_least_reassumes_only_the_target_hop(
    aws_env: MotoServer, chain: Chain, tmp_path: Path
) -> None:
    cache = CredentialCache(tmp_path / "c")
    target_credentials(chain, "audit@222222222222", cache=cache)
    longer = target_credentials(chain, "audit@222222222222", cache=cache, at_least=2 * 3600)
    assert aws_env.assume_calls() == 3  # the hub came from the cache
    assert not longer.from_cache


def test_other_starting_keys_do_not_share_entries(
    aws_env: MotoServer, chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = CredentialCache(tmp_path / "c")
    target_credentials(chain, "hub", cache=cache)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAROLECHAINTEST02")
    target_credentials(chain, "hub", cache=cache)
    assert aws_env.assume_calls() == 2
    assert len(list(cache.entries())) == 2


def test_explicit_root_credentials(aws_env: MotoServer, chain: Chain, tmp_path: Path) -> None:
    root = Credentials("AKIAEXPLICITROOT1", "secret")
    creds = target_credentials(chain, "hub", root=root, cache=CredentialCache(tmp_path / "c"))
    assert identity(creds).startswith("arn:aws:sts::111111111111:assumed-role/hub/")


def test_session_keys_for_a_user_principal_replan_as_chained(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    text = CHAIN.replace("    trusts: [ci]\n", "    trusts: [ci]\n    max_session_duration: 4h\n")
    chain = loads(text, file="chain.yaml")
    root = Credentials("ASIASESSIONROOT01", "secret", "a-session-token")
    creds = target_credentials(chain, "hub", root=root, cache=CredentialCache(tmp_path / "c"))
    # Planned as user keys the hub would get 4 hours; from a session it is capped at 1 hour.
    # Expiry is measured against the response's whole-second Date header: +-1 s.
    assert 3590 < creds.remaining() <= 3602
    assert any("session" in note for note in creds.notes)


def test_recursion_is_refused(
    aws_env: MotoServer, chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rolechain.credentials import process

    key = process._loop_key(chain, "hub-only", "hub")
    monkeypatch.setenv(RECURSION_MARKER, f"0123456789abcdef,{key}")
    with pytest.raises(CredentialsError, match="loop"):
        target_credentials(chain, "hub", cache=None)
    # Another target (a different chain or job) nested inside is fine.
    monkeypatch.setenv(RECURSION_MARKER, "0123456789abcdef")
    target_credentials(chain, "hub", cache=None)
    assert os.environ[RECURSION_MARKER] == "0123456789abcdef"


def test_choose_job(chain: Chain) -> None:
    assert jobs_reaching(chain, "audit@333333333333") == ["everything", "inventory"]
    assert choose_job(chain, "audit@222222222222", None) == "inventory"
    assert choose_job(chain, "hub", None) == "hub-only"
    with pytest.raises(UsageError) as many:
        choose_job(chain, "audit@333333333333", None)
    assert "everything, inventory" in str(many.value)
    assert "--job" in str(many.value)
    with pytest.raises(UsageError) as none:
        choose_job(chain, "hubb", None)
    assert "did you mean 'hub'" in str(none.value)
    assert "inventory (to: audit@222222222222, audit@333333333333)" in str(none.value)
    with pytest.raises(UsageError, match="unknown job 'nope'"):
        choose_job(chain, "hub", "nope")
    assert UsageError("x").exit_code == 2  # wrong arguments: nothing was called


def test_target_outside_the_job_is_a_plan_error(aws_env: MotoServer, chain: Chain) -> None:
    from rolechain.errors import PlanError

    with pytest.raises(PlanError, match="not a target of job"):
        target_credentials(chain, "hub", job="inventory", cache=None)
    assert aws_env.assume_calls() == 0


MFA_CHAIN = """
version: 1
principals:
  alice: {source: env, kind: user}
roles:
  mfa-hub:
    arn: arn:aws:iam::111111111111:role/mfa-hub
    trusts: [alice]
    mfa_serial: arn:aws:iam::111111111111:mfa/alice
  leaf-a: {arn: "arn:aws:iam::222222222222:role/leaf", trusts: [mfa-hub]}
  leaf-b: {arn: "arn:aws:iam::333333333333:role/leaf", trusts: [mfa-hub]}
jobs:
  admin: {from: alice, to: [leaf-a, leaf-b]}
"""


def test_mfa_is_asked_only_when_the_mfa_hop_is_assumed(aws_env: MotoServer, tmp_path: Path) -> None:
    chain = loads(MFA_CHAIN, file="mfa.yaml")
    cache = CredentialCache(tmp_path / "c")
    asked: list[str] = []

    def provider(hop: object) -> str:
        asked.append(hop.label)  # type: ignore[attr-defined]
        return "123456"

    target_credentials(chain, "leaf-a", cache=cache, token_provider=provider)
    assert asked == ["alice -> mfa-hub"]
    target_credentials(chain, "leaf-b", cache=cache, token_provider=provider)
    assert asked == ["alice -> mfa-hub"]  # the MFA session came from the cache
    assert aws_env.assume_calls() == 3
    # Unattended (no terminal), a cached MFA session still works...
    target_credentials(chain, "leaf-b", cache=cache, token_provider=None)
    # ...and without one the error says what to do.
    with pytest.raises(CredentialsError, match="run the command once from a terminal"):
        target_credentials(
            chain, "leaf-a", cache=CredentialCache(tmp_path / "empty"), token_provider=None
        )
    with pytest.raises(CredentialsError, match="unattended"):
        target_credentials(chain, "leaf-a", cache=None, token_provider=None)


class FakeAssumer:
    """Issues numbered credentials and records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def assume(self, hop: Any, caller: Credentials, token_code: str | None = None) -> Any:
        from datetime import UTC, datetime, timedelta

        from rolechain.aws.assumer import IssuedCredentials

        self.calls.append((hop.id, token_code))
        now = datetime.now(UTC)
        n = len(self.calls)
        return IssuedCredentials(
            f"ASIAFAKE{n:04d}",
            f"secret{n}",
            f"token{n}",
            now + timedelta(seconds=hop.duration_seconds),
            issued_at=now,
        )


def test_caching_assumer_with_a_fake_inner_assumer(tmp_path: Path) -> None:
    from rolechain.credentials.cache import path_keys, root_fingerprint
    from rolechain.credentials.process import DEFERRED_TOKEN, CachingAssumer, plan_target

    chain = loads(MFA_CHAIN, file="mfa.yaml")
    planned, target = plan_target(chain, "admin", "leaf-a")
    hops = planned.path_hops(target)
    keys = path_keys(root_fingerprint("AKIAFAKEROOT", principal="alice"), hops)
    fake = FakeAssumer()
    cache = CredentialCache(tmp_path / "c")
    caching = CachingAssumer(fake, cache, keys, token_provider=lambda hop: "654321")
    root = Credentials("AKIAFAKEROOT", "x")
    first = caching.assume(hops[0], root, DEFERRED_TOKEN)
    assert fake.calls == [(hops[0].id, "654321")]
    again = caching.assume(hops[0], root, DEFERRED_TOKEN)
    assert again.access_key == first.access_key
    assert again.issued_at is not None
    assert again.expiration == first.expiration.replace(microsecond=0)
    assert len(fake.calls) == 1
    assert caching.served == [hops[0].id]
    assert caching.assumed == [hops[0].id]
    # at_least beyond the session's length forces a new assumption.
    strict = CachingAssumer(fake, cache, keys, at_least={hops[0].id: 7200.0})
    strict.assume(hops[0], root, "111111")
    assert fake.calls[-1] == (hops[0].id, "111111")
    # A hop without a key is passed through and not cached.
    bare = CachingAssumer(fake, cache, {})
    bare.assume(hops[1], root)
    assert len(list(cache.entries())) == 1
