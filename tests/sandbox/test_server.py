"""The sandbox context manager: time scale, faults, start-up errors."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from rolechain.errors import RolechainError
from rolechain.sandbox import Faults, sandbox
from rolechain.sandbox.responses import EXPIRED_TOKEN

from .conftest import Clients, aws_error, chain_from

CHAIN = """
version: 1
principals:
  ops: {kind: user, account: "111111111111"}
roles:
  hub: {arn: "arn:aws:iam::222222222222:role/Hub", trusts: [ops]}
role_sets:
  audit: {role_name: Audit, trusts: [hub], accounts: ["333333333333", "444444444444"]}
"""
HUB = "arn:aws:iam::222222222222:role/Hub"


def test_env_reaches_the_sandbox_as_the_principal() -> None:
    with sandbox(chain_from(CHAIN)) as sb:
        assert sb.env["AWS_ENDPOINT_URL"] == sb.endpoint
        assert sb.endpoint.startswith("http://127.0.0.1:")
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"} <= set(sb.env)
        arn = Clients(sb.endpoint).client("sts", sb.env).get_caller_identity()["Arn"]
        assert arn == "arn:aws:iam::111111111111:user/ops"
        assert sorted(sb.provisioned.buckets) == ["222222222222", "333333333333", "444444444444"]


def test_time_scale_compresses_sessions_and_their_expiration() -> None:
    with sandbox(chain_from(CHAIN), time_scale=900) as sb:
        aws = Clients(sb.endpoint)
        asked = datetime.now(UTC)
        creds = aws.assume(sb.env, HUB, DurationSeconds=900)["Credentials"]
        answered = datetime.now(UTC)
        # 900 s of sandbox time: one real second after the call was answered, rounded to
        # whole seconds (bounds from either side of the call: a loaded machine may take
        # seconds to answer, and the session may be over before the client reads it).
        earliest = asked.replace(microsecond=0)
        assert earliest < creds["Expiration"] <= answered + timedelta(seconds=2)
        if datetime.now(UTC) < creds["Expiration"]:
            sts = aws.client("sts", creds)
            assert sts.get_caller_identity()["Account"] == "222222222222"
        deadline = time.monotonic() + 60  # a hang guard: it expires a second from now
        while not sb.state.identity(creds["AccessKeyId"]).expired(time.time()):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the session never expired"
            time.sleep(0.05)
        assert aws_error(sts.get_caller_identity) == ("ExpiredToken", EXPIRED_TOKEN, 400)


def test_throttling_burst_then_success() -> None:
    with sandbox(chain_from(CHAIN), faults=Faults(throttle_first=2)) as sb:
        aws = Clients(sb.endpoint)
        for _ in range(2):
            assert aws_error(lambda: aws.assume(sb.env, HUB)) == (
                "Throttling",
                "Rate exceeded",
                400,
            )
        assert aws.assume(sb.env, HUB)["Credentials"]["AccessKeyId"].startswith("ASIA")
        assert sb.state.denied["Throttling"] == 2


def test_throttle_rate_is_a_fraction_of_sts_calls() -> None:
    with sandbox(chain_from(CHAIN), faults=Faults(throttle=0.5, seed=7)) as sb:
        aws = Clients(sb.endpoint)
        outcomes = []
        for _ in range(40):
            try:
                aws.client("sts", sb.env).get_caller_identity()
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(exc.response["Error"]["Code"])
        assert set(outcomes) == {"ok", "Throttling"}
        assert 8 <= outcomes.count("Throttling") <= 32


def test_denied_accounts_refuse_assume_role() -> None:
    with sandbox(chain_from(CHAIN), faults=Faults(deny_accounts=frozenset({"444444444444"}))) as sb:
        aws = Clients(sb.endpoint)
        hub = aws.assume(sb.env, HUB)["Credentials"]
        assert aws.assume(hub, "arn:aws:iam::333333333333:role/Audit")
        code, message, status = aws_error(
            lambda: aws.assume(hub, "arn:aws:iam::444444444444:role/Audit")
        )
        assert (code, status) == ("AccessDenied", 403)
        assert "arn:aws:iam::444444444444:role/Audit" in message


def test_dropped_connections_reach_the_client_as_connection_errors() -> None:
    with sandbox(chain_from(CHAIN), faults=Faults(drop=1.0)) as sb:
        sts = Clients(sb.endpoint).client("sts", sb.env)
        with pytest.raises(BotoCoreError):
            sts.get_caller_identity()


def test_latency_fault_still_answers() -> None:
    with sandbox(chain_from(CHAIN), faults=Faults(latency=0.01)) as sb:
        sts = Clients(sb.endpoint).client("sts", sb.env)
        assert sts.get_caller_identity()["Account"] == "111111111111"


def test_bad_arguments_are_rolechain_errors() -> None:
    with (
        pytest.raises(RolechainError, match="time_scale"),
        sandbox(chain_from(CHAIN), time_scale=0),
    ):
        pass
    with pytest.raises(ValueError, match="throttle"):
        Faults(throttle=2)


def test_port_in_use_is_explained() -> None:
    with sandbox(chain_from(CHAIN)) as first:
        port = int(first.endpoint.rsplit(":", 1)[1])
        with (
            pytest.raises(RolechainError, match=f"127.0.0.1:{port}"),
            sandbox(chain_from(CHAIN), port=port),
        ):
            pass


# -- the STS quota, keep-alive and connection latency -----------------------------------------


def test_sts_rate_is_a_quota_per_calling_account() -> None:
    # One call every 100 s, 3 saved up: the 4th call of an account is throttled, whatever
    # the machine's speed; another calling account has its own bucket.
    with sandbox(chain_from(CHAIN), faults=Faults(sts_rate=0.01, sts_burst=3)) as sb:
        aws = Clients(sb.endpoint)
        hub = aws.assume(sb.env, HUB)["Credentials"]  # the principal's account: 1 of 3
        aws.client("sts", sb.env).get_caller_identity()  # 2
        aws.assume(sb.env, HUB)  # 3
        assert aws_error(lambda: aws.assume(sb.env, HUB)) == ("Throttling", "Rate exceeded", 400)
        # The hub's account (222222222222) calls with its own quota.
        for _ in range(3):
            assert aws.assume(hub, "arn:aws:iam::333333333333:role/Audit")
        code, _, _ = aws_error(lambda: aws.assume(hub, "arn:aws:iam::444444444444:role/Audit"))
        assert code == "Throttling"
        assert sb.state.denied["Throttling"] == 2
        # Other services are not STS: not counted against it.
        aws.client("s3", hub).list_buckets()


def test_sts_rate_refills_at_its_rate() -> None:
    with sandbox(chain_from(CHAIN), faults=Faults(sts_rate=20, sts_burst=1)) as sb:
        sts = Clients(sb.endpoint).client("sts", sb.env)
        answered = 0
        codes = set()
        start = time.monotonic()
        while answered < 5:  # 1 saved up, then one every 50 ms
            try:
                sts.get_caller_identity()
                answered += 1
            except ClientError as exc:
                codes.add(exc.response["Error"]["Code"])
        assert codes <= {"Throttling"}
        assert time.monotonic() - start >= 4 * 0.05 - 0.01  # a floor: never flaky


def test_connections_are_kept_alive_and_counted() -> None:
    with sandbox(chain_from(CHAIN)) as sb:
        aws = Clients(sb.endpoint)
        before = sb.state.connections
        sts = aws.client("sts", sb.env)
        for _ in range(10):
            sts.get_caller_identity()
        assert sb.state.connections - before == 1  # one client, one connection, reused
        for _ in range(5):
            aws.client("sts", sb.env).get_caller_identity()
        assert sb.state.connections - before == 6  # each new client opens its own


def test_connect_latency_delays_the_first_request_of_each_connection() -> None:
    with sandbox(chain_from(CHAIN), faults=Faults(connect_latency=0.3)) as sb:
        sts = Clients(sb.endpoint).client("sts", sb.env)
        start = time.monotonic()
        sts.get_caller_identity()
        assert time.monotonic() - start >= 0.3  # a new connection pays the handshake
        before = sb.state.connections
        for _ in range(3):
            sts.get_caller_identity()
        assert sb.state.connections == before  # the same connection: paid once


def test_rate_and_latency_arguments_are_checked() -> None:
    from rolechain.sandbox.faults import parse_rate

    assert parse_rate("50") == (50.0, None)
    assert parse_rate("50:10") == (50.0, 10.0)
    for bad in ("0", "-1", "fast", "50:0", "50:x", "inf"):
        with pytest.raises(ValueError, match=r"rate|burst|RATE"):
            parse_rate(bad)
    with pytest.raises(ValueError, match="connect_latency"):
        Faults(connect_latency=-1)
    with pytest.raises(ValueError, match="sts_rate"):
        Faults(sts_rate=0)


def test_faults_can_change_while_it_runs() -> None:
    with sandbox(chain_from(CHAIN)) as sb:
        sts = Clients(sb.endpoint).client("sts", sb.env)
        sts.get_caller_identity()
        sb.set_faults(Faults(throttle=1.0))
        assert aws_error(sts.get_caller_identity)[0] == "Throttling"
        sb.set_faults(Faults())
        assert sts.get_caller_identity()["Account"] == "111111111111"
