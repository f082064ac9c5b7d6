from __future__ import annotations

import boto3
import pytest

from rolechain.aws.session import AwsSessions, principal_credentials, static_credentials
from rolechain.errors import CredentialsError

from .fakes import DEFAULT_ACCOUNT, FAKE_KEY, FAKE_SECRET, FakeClock, acct, fake_for, hub_plan


def test_clients_are_reused_per_service_region_and_credentials(aws) -> None:  # type: ignore[no-untyped-def]
    sessions = AwsSessions(concurrency=32)
    creds = static_credentials(FAKE_KEY, FAKE_SECRET)
    other = static_credentials(FAKE_KEY, FAKE_SECRET)
    a = sessions.client("sts", "us-east-1", creds)
    assert sessions.client("sts", "us-east-1", creds) is a
    assert sessions.client("sts", "eu-west-1", creds) is not a
    assert sessions.client("sts", "us-east-1", other) is not a
    assert sessions.clients_created == 3
    # botocore retries off (rolechain retries), pool sized to the concurrency
    assert a.meta.config.retries["total_max_attempts"] == 1
    assert a.meta.config.max_pool_connections == 32
    assert a.get_caller_identity()["Account"] == DEFAULT_ACCOUNT


def test_client_cache_is_bounded(aws) -> None:  # type: ignore[no-untyped-def]
    sessions = AwsSessions(max_clients=4)
    keep = [static_credentials(FAKE_KEY, FAKE_SECRET) for _ in range(10)]
    for creds in keep:
        sessions.client("sts", "us-east-1", creds)
    assert len(sessions._clients) == 4


def test_cached_client_signs_with_refreshed_credentials(aws) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    from rolechain.aws.credentials import HopTree

    assumer = fake_for(plan, clock)
    tree = HopTree(plan, static_credentials(FAKE_KEY, FAKE_SECRET), assumer, clock=clock)
    creds = tree.for_target(plan.targets[0])
    sessions = AwsSessions()
    client = sessions.client("s3", "us-east-1", creds)
    before = creds.get_frozen_credentials().access_key
    clock.advance(3000)  # into the refresh window
    signer_creds = client._request_signer._credentials
    assert signer_creds is creds
    assert signer_creds.get_frozen_credentials().access_key != before


def test_boto3_session_uses_given_credentials_and_region(aws) -> None:  # type: ignore[no-untyped-def]
    sessions = AwsSessions()
    sts = sessions.client("sts", "us-east-1", static_credentials(FAKE_KEY, FAKE_SECRET))
    assumed = sts.assume_role(
        RoleArn="arn:aws:iam::333333333333:role/audit", RoleSessionName="test"
    )["Credentials"]
    creds = static_credentials(
        assumed["AccessKeyId"], assumed["SecretAccessKey"], assumed["SessionToken"]
    )
    session = sessions.boto3_session(creds, "eu-west-1")
    assert isinstance(session, boto3.Session)
    assert session.region_name == "eu-west-1"
    assert session.client("sts").get_caller_identity()["Account"] == "333333333333"
    assert session.get_credentials() is creds
    # boto3's resource data path is added to the shared loader once, not per session
    sessions.boto3_session(creds, "eu-west-1")
    paths = sessions.session.get_component("data_loader").search_paths
    assert len(paths) == len(set(paths))
    assert session.resource("s3") is not None


def test_principal_credentials(aws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert principal_credentials("env").access_key == FAKE_KEY
    assert principal_credentials("default").access_key == FAKE_KEY
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CredentialsError, match="no starting credentials"):
        principal_credentials("env")


def test_release_drops_only_that_credentials_clients(aws) -> None:  # type: ignore[no-untyped-def]
    sessions = AwsSessions()
    done = static_credentials(FAKE_KEY, FAKE_SECRET)
    busy = static_credentials(FAKE_KEY, FAKE_SECRET)
    sessions.client("s3", "us-east-1", done)
    sessions.client("sts", "eu-west-1", done)
    kept = sessions.client("sts", "us-east-1", busy)
    sessions.release(done)
    assert [k[2] for k in sessions._clients] == [id(busy)]
    assert sessions.client("sts", "us-east-1", busy) is kept


def test_warm_loads_each_service_once_and_skips_unknown_ones() -> None:
    import botocore.session

    sessions = AwsSessions(concurrency=4, botocore_session=botocore.session.get_session())
    loader = sessions.session.get_component("data_loader")

    def loaded(service: str) -> bool:
        return any(service in map(str, key) for key in loader._cache)

    assert not loaded("s3")
    sessions.warm(["sts", "s3", "sts", "no-such-service"], "us-east-1")
    assert loaded("s3")
    assert loaded("sts")
    assert sessions.clients_created == 0  # warm-up clients are thrown away, never cached


def test_a_lent_client_signs_with_each_borrowers_credentials_in_turn(aws) -> None:  # type: ignore[no-untyped-def]
    from executor.moto_helpers import assume

    sessions = AwsSessions()
    first, second = (assume(sessions, acct(i)) for i in (1, 2))
    client = sessions.borrow("sts", "us-east-1", first)
    assert client.get_caller_identity()["Account"] == acct(1)
    sessions.give_back(client)
    # An idle lent client signs with nothing at all: a stray use raises, never signs.
    with pytest.raises(CredentialsError, match="after its task gave it back"):
        client.get_caller_identity()
    again = sessions.borrow("sts", "us-east-1", second)
    assert again is client  # the same client, lent to the next task ...
    assert again.get_caller_identity()["Account"] == acct(2)  # ... signing with its keys
    other = sessions.borrow("sts", "us-east-1", first)
    assert other is not client  # never lent to two tasks at once
    assert sessions.clients_lent == 3
    assert [key[0] for key in sessions._clients] == ["sts"]  # only assume()'s, cached
    assert sessions.clients_created == 1 + 2


def test_only_clients_without_per_account_state_are_lent(aws) -> None:  # type: ignore[no-untyped-def]
    sessions = AwsSessions()
    creds = static_credentials(FAKE_KEY, FAKE_SECRET)
    # Endpoint discovery (Timestream, DynamoDB) finds endpoints per account: such clients
    # are made per credentials, as before, and giving them back does nothing.
    timestream = sessions.borrow("timestream-query", "us-east-1", creds)
    assert sessions.client("timestream-query", "us-east-1", creds) is timestream
    sessions.give_back(timestream)
    assert timestream._request_signer._credentials is creds
    # A lent S3 client signs S3 Express requests with SigV4, not with CreateSession
    # credentials that it would cache per bucket across borrowers.
    s3 = sessions.borrow("s3", "us-east-1", creds)
    assert s3.meta.config.s3["disable_s3_express_session_auth"] is True
    # An unknown service is left to the client path, which names it.
    from rolechain.errors import PermanentAwsError

    with pytest.raises(PermanentAwsError, match="no-such-service"):
        sessions.borrow("no-such-service", "us-east-1", creds)
