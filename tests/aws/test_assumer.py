from __future__ import annotations

from datetime import UTC, datetime, timedelta

import botocore.session
import pytest

from rolechain.aws.assumer import Assumer, IssuedCredentials, StsAssumer, issued_from_response
from rolechain.aws.ratelimit import RateLimiter
from rolechain.aws.retry import RetryPolicy
from rolechain.aws.session import AwsSessions, static_credentials
from rolechain.errors import AccessDeniedError, TransientAwsError

from .fakes import FAKE_KEY, FAKE_SECRET, FakeAssumer, FakeClock, Faults, make_hop

POLICY = RetryPolicy(attempts=4, max_wait=0.01, initial_wait=0.001)


def private_sessions(faults: Faults | None = None) -> AwsSessions:
    session = botocore.session.Session()
    if faults is not None:
        faults.install(session)
    return AwsSessions(botocore_session=session)


def hop(account: str = "222222222222", **extra):  # type: ignore[no-untyped-def]
    return make_hop("ci>audit", None, account, "audit", depth=1, duration=900, **extra)


def test_protocol_is_met() -> None:
    assert isinstance(StsAssumer(private_sessions()), Assumer)
    assert isinstance(FakeAssumer(FakeClock(), {}), Assumer)


def test_assume_role_against_moto(aws) -> None:  # type: ignore[no-untyped-def]
    assumer = StsAssumer(private_sessions(), policy=POLICY)
    issued = assumer.assume(hop(external_id="ext-123"), static_credentials(FAKE_KEY, FAKE_SECRET))
    assert issued.access_key.startswith("ASIA")
    assert issued.assumed_role_arn == "arn:aws:sts::222222222222:assumed-role/audit/rolechain-test"
    assert issued.lifetime_seconds is not None
    assert 895 <= issued.lifetime_seconds <= 905
    assert assumer.stats.assume_calls == 1
    assert assumer.stats.retries == 0


def test_expiry_is_moved_to_the_local_clock(aws) -> None:  # type: ignore[no-untyped-def]
    # a local clock a day ahead of AWS: the session still lasts 900 s from "now"
    ahead = FakeClock(datetime.now(UTC) + timedelta(days=1))
    assumer = StsAssumer(private_sessions(), policy=POLICY, clock=ahead)
    issued = assumer.assume(hop(), static_credentials(FAKE_KEY, FAKE_SECRET))
    remaining = (issued.expiration - ahead()).total_seconds()
    assert 895 <= remaining <= 905


def test_issued_from_response_without_date_keeps_expiration() -> None:
    expiration = datetime(2030, 1, 1, tzinfo=UTC)
    response = {
        "Credentials": {
            "AccessKeyId": "ASIAXXXXXXXXXXXX",
            "SecretAccessKey": "s",
            "SessionToken": "t",
            "Expiration": expiration,
        },
    }
    issued = issued_from_response(response, datetime(2029, 1, 1, tzinfo=UTC))
    assert issued.expiration == expiration


def test_throttling_burst_is_retried_and_counted(aws) -> None:  # type: ignore[no-untyped-def]
    burst = iter(range(3))
    faults = Faults(
        lambda op, request: (
            ("Throttling", "Rate exceeded", 400)
            if op == "AssumeRole" and next(burst, None) is not None
            else None
        )
    )
    assumer = StsAssumer(private_sessions(faults), policy=POLICY, sleep=lambda s: None)
    issued = assumer.assume(hop(), static_credentials(FAKE_KEY, FAKE_SECRET))
    assert issued.access_key
    assert faults.seen["AssumeRole"] == 4
    assert assumer.stats.assume_calls == 4
    assert assumer.stats.retries == assumer.stats.assume_retries == 0  # throttles: apart
    assert assumer.stats.throttled == assumer.stats.assume_throttled == 3


def test_retries_stop_after_the_configured_attempts(aws) -> None:  # type: ignore[no-untyped-def]
    faults = Faults(lambda op, request: "connection" if op == "AssumeRole" else None)
    assumer = StsAssumer(private_sessions(faults), policy=POLICY, sleep=lambda s: None)
    with pytest.raises(TransientAwsError) as info:
        assumer.assume(hop(), static_credentials(FAKE_KEY, FAKE_SECRET))
    assert info.value.code == "EndpointConnectionError"
    assert faults.seen["AssumeRole"] == 4  # botocore's own retries are off: 4 = ours only
    assert assumer.stats.retries == 3


def test_permanent_error_is_not_retried(aws) -> None:  # type: ignore[no-untyped-def]
    faults = Faults(
        lambda op, request: (
            ("AccessDenied", "User is not authorized", 403) if op == "AssumeRole" else None
        )
    )
    assumer = StsAssumer(private_sessions(faults), policy=POLICY, sleep=lambda s: None)
    with pytest.raises(AccessDeniedError) as info:
        assumer.assume(hop(), static_credentials(FAKE_KEY, FAKE_SECRET))
    assert faults.seen["AssumeRole"] == 1
    assert info.value.context.hop == "ci -> audit"
    assert "trust policy" in (info.value.hint or "")


def test_rate_limiter_paces_every_attempt(aws) -> None:  # type: ignore[no-untyped-def]
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2, burst=1, clock=lambda: now[0], sleep=sleep)
    assumer = StsAssumer(private_sessions(), policy=POLICY, pacer=limiter)
    caller = static_credentials(FAKE_KEY, FAKE_SECRET)
    for _ in range(3):
        assumer.assume(hop(), caller)
    assert now[0] == pytest.approx(1.0)  # 3 calls at 2/s with a burst of 1


def test_mfa_token_code_is_sent(aws) -> None:  # type: ignore[no-untyped-def]
    sent = []

    def rule(op, request):  # type: ignore[no-untyped-def]
        if op == "AssumeRole":
            sent.append(request.body)
        return None

    assumer = StsAssumer(private_sessions(Faults(rule)), policy=POLICY)
    assumer.assume(
        hop(mfa_serial="arn:aws:iam::123456789012:mfa/ci"),
        static_credentials(FAKE_KEY, FAKE_SECRET),
        token_code="123456",
    )
    body = sent[0].decode() if isinstance(sent[0], bytes) else sent[0]
    assert "TokenCode=123456" in body
    assert "SerialNumber=arn" in body


def test_issued_credentials_hide_secrets() -> None:
    issued = IssuedCredentials(
        access_key="ASIAABCDEFGHIJKLMNOP",
        secret_key="very-secret",
        token="very-token",
        expiration=datetime(2030, 1, 1, tzinfo=UTC),
    )
    for text in (repr(issued), str(issued), f"{issued}"):
        assert "very-secret" not in text
        assert "very-token" not in text
        assert "ASIAABCDEFGHIJKLMNOP" not in text
