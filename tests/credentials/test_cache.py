"""The on-disk credential cache: keys, freshness, permissions, atomicity, bad files."""

from __future__ import annotations

import json
import os
import stat
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rolechain.credentials.cache import (
    CACHE_FORMAT,
    CachedCredentials,
    CredentialCache,
    Freshness,
    cache_disabled_by_env,
    default_cache_dir,
    hop_key,
    path_keys,
    root_fingerprint,
)
from rolechain.planner.plan import Hop

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def make_hop(**changes: object) -> Hop:
    hop = Hop(
        id="ci>hub",
        parent=None,
        caller="ci",
        role="hub",
        role_arn="arn:aws:iam::111111111111:role/hub",
        account_id="111111111111",
        partition="aws",
        depth=1,
        chained=False,
        duration_seconds=3600,
        duration_source="default",
        session_name="rolechain-inv-credentials",
    )
    return replace(hop, **changes)  # type: ignore[arg-type]


def creds(minutes: float, key: str = "ASIAHUB") -> CachedCredentials:
    return CachedCredentials(
        key, "secret-" + key, "token-" + key, NOW + timedelta(minutes=minutes), NOW
    )


@pytest.fixture
def cache(tmp_path: Path) -> CredentialCache:
    return CredentialCache(tmp_path / "cache", now=lambda: NOW)


ROOT = root_fingerprint("AKIAEXAMPLE", principal="ci")


def test_put_then_get_round_trips(cache: CredentialCache) -> None:
    key = hop_key(ROOT, make_hop())
    assert cache.get(key) is None
    assert cache.put(key, make_hop(), creds(60))
    found = cache.get(key)
    assert found == creds(60)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (1, 1, 1)


def test_directory_is_0700_and_files_0600(cache: CredentialCache) -> None:
    key = hop_key(ROOT, make_hop())
    cache.put(key, make_hop(), creds(60))
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700
    files = list(cache.directory.iterdir())
    assert [f.name for f in files] == [f"{key}.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_loose_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "loose"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    store = CredentialCache(directory, now=lambda: NOW)
    store.put(hop_key(ROOT, make_hop()), make_hop(), creds(60))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_file_readable_by_others_is_a_miss(cache: CredentialCache) -> None:
    key = hop_key(ROOT, make_hop())
    cache.put(key, make_hop(), creds(60))
    (cache.directory / f"{key}.json").chmod(0o644)
    assert cache.get(key) is None
    assert cache.stats.rejected == 1


def test_key_covers_every_assume_role_parameter() -> None:
    base = make_hop()
    variants = [
        make_hop(role_arn="arn:aws:iam::111111111111:role/other"),
        make_hop(external_id="ext-1"),
        make_hop(session_name="other-name"),
        make_hop(source_identity="alice"),
        make_hop(policy='{"Version":"2012-10-17","Statement":[]}'),
        make_hop(policy_arns=("arn:aws:iam::aws:policy/ReadOnlyAccess",)),
        make_hop(tags=(("team", "sec"),)),
        make_hop(tags=(("team", "sec"),), transitive_tag_keys=("team",)),
        make_hop(duration_seconds=900),
        make_hop(mfa_serial="arn:aws:iam::111111111111:mfa/alice"),
    ]
    keys = {hop_key(ROOT, base)} | {hop_key(ROOT, h) for h in variants}
    assert len(keys) == len(variants) + 1
    # The root identity is part of the key, and so is every hop before this one.
    other_root = root_fingerprint("AKIAOTHER", principal="ci")
    assert hop_key(other_root, base) != hop_key(ROOT, base)
    assert root_fingerprint("AKIAEXAMPLE", principal="ci", endpoint="http://127.0.0.1:1") != ROOT
    # Fields that are not AssumeRole parameters (labels, locations) do not change it.
    assert hop_key(ROOT, replace(base, caller="renamed", id="x>hub")) == hop_key(ROOT, base)


def test_root_fingerprint_never_contains_the_key_id() -> None:
    assert "AKIAEXAMPLE" not in ROOT
    assert len(ROOT) == 64


def test_path_keys_share_the_hub() -> None:
    hub = make_hop()
    leaf_a = make_hop(
        id="ci>hub>a",
        parent="ci>hub",
        role="a",
        depth=2,
        chained=True,
        role_arn="arn:aws:iam::222222222222:role/a",
    )
    leaf_b = replace(leaf_a, id="ci>hub>b", role="b", role_arn="arn:aws:iam::333333333333:role/b")
    keys_a = path_keys(ROOT, [hub, leaf_a])
    keys_b = path_keys(ROOT, [hub, leaf_b])
    assert keys_a["ci>hub"] == keys_b["ci>hub"]
    assert keys_a["ci>hub>a"] != keys_b["ci>hub>b"]
    # A different hub under the same leaf parameters gives the leaf another key.
    other_hub = make_hop(external_id="changed")
    assert path_keys(ROOT, [other_hub, leaf_a])["ci>hub>a"] != keys_a["ci>hub>a"]


@pytest.mark.parametrize(
    ("duration", "minutes_left", "usable"),
    [
        (3600, 16, True),  # margin is 15 minutes for a one-hour session
        (3600, 15, False),
        (3600, 5, False),
        (900, 8, True),  # 15-minute session: half of it, 7.5 minutes
        (900, 7, False),
        (43200, 16, True),
    ],
)
def test_freshness_margin(
    cache: CredentialCache, duration: int, minutes_left: int, usable: bool
) -> None:
    hop = make_hop(duration_seconds=duration)
    key = hop_key(ROOT, hop)
    cache.put(key, hop, creds(minutes_left))
    assert (cache.get(key) is not None) is usable


def test_at_least_asks_for_more_validity(cache: CredentialCache) -> None:
    key = hop_key(ROOT, make_hop())
    cache.put(key, make_hop(), creds(50))
    assert cache.get(key) is not None
    assert cache.get(key, at_least=55 * 60) is None
    strict = Freshness(margin_seconds=3000, fraction=1.0)  # needs more than 50 minutes
    assert CredentialCache(cache.directory, freshness=strict, now=lambda: NOW).get(key) is None


def _write_raw(cache: CredentialCache, key: str, payload: bytes) -> Path:
    cache.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = cache.directory / f"{key}.json"
    path.write_bytes(payload)
    path.chmod(0o600)
    return path


def _valid_record(cache: CredentialCache, key: str) -> dict[str, object]:
    cache.put(key, make_hop(), creds(60))
    return json.loads((cache.directory / f"{key}.json").read_text())


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda r: b"{not json", id="not-json"),
        pytest.param(lambda r: b"\xff\xfe\x00garbage", id="binary"),
        pytest.param(lambda r: b"", id="empty"),
        pytest.param(lambda r: b"[]", id="not-an-object"),
        pytest.param(lambda r: json.dumps({**r, "version": 99}).encode(), id="other-version"),
        pytest.param(lambda r: json.dumps({**r, "format": "aws-cli"}).encode(), id="foreign"),
        pytest.param(lambda r: json.dumps({**r, "key": "0" * 64}).encode(), id="key-mismatch"),
        pytest.param(lambda r: json.dumps({**r, "expiration": "soon"}).encode(), id="bad-time"),
        pytest.param(
            lambda r: json.dumps({**r, "expiration": "2030-01-01T00:00:00"}).encode(),
            id="naive-time",
        ),
        pytest.param(lambda r: json.dumps({**r, "credentials": {}}).encode(), id="no-keys"),
        pytest.param(
            lambda r: json.dumps({**r, "duration_seconds": "1h"}).encode(), id="bad-duration"
        ),
        pytest.param(lambda r: json.dumps({**r, "credentials": "x"}).encode(), id="creds-str"),
        pytest.param(lambda r: b" " * (70 * 1024), id="too-large"),
    ],
)
def test_bad_file_is_a_miss_never_a_crash(cache: CredentialCache, mutate: object) -> None:
    key = hop_key(ROOT, make_hop())
    record = _valid_record(cache, key)
    _write_raw(cache, key, mutate(record))  # type: ignore[operator]
    assert cache.get(key) is None
    assert cache.stats.rejected == 1
    assert list(cache.entries()) == []
    # A fresh put replaces the bad file.
    assert cache.put(key, make_hop(), creds(60))
    assert cache.get(key) == creds(60)


def test_unreadable_file_is_a_miss(cache: CredentialCache) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    key = hop_key(ROOT, make_hop())
    cache.put(key, make_hop(), creds(60))
    (cache.directory / f"{key}.json").chmod(0o000)
    assert cache.get(key) is None


def test_symlink_is_not_followed(cache: CredentialCache, tmp_path: Path) -> None:
    key = hop_key(ROOT, make_hop())
    record = _valid_record(cache, key)
    elsewhere = tmp_path / "planted.json"
    elsewhere.write_text(json.dumps(record))
    elsewhere.chmod(0o600)
    entry = cache.directory / f"{key}.json"
    entry.unlink()
    entry.symlink_to(elsewhere)
    assert cache.get(key) is None


def test_directory_that_is_a_file_disables_the_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = CredentialCache(blocker, now=lambda: NOW)
    key = hop_key(ROOT, make_hop())
    assert store.put(key, make_hop(), creds(60)) is False
    assert store.get(key) is None
    assert store.problems
    assert list(store.entries()) == []


def test_missing_directory_is_a_miss_and_not_created_by_reads(tmp_path: Path) -> None:
    store = CredentialCache(tmp_path / "absent", now=lambda: NOW)
    assert store.get(hop_key(ROOT, make_hop())) is None
    assert list(store.entries()) == []
    assert store.clear() == 0
    assert not (tmp_path / "absent").exists()


def test_concurrent_writers_leave_one_complete_entry(cache: CredentialCache) -> None:
    key = hop_key(ROOT, make_hop())
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(20):
                store = CredentialCache(cache.directory, now=lambda: NOW)
                store.put(key, make_hop(), creds(60 + n, key=f"ASIA{n}X{i}"))
                found = store.get(key)
                assert found is not None  # never a torn file
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = sorted(p.name for p in cache.directory.iterdir())
    assert names == [f"{key}.json"]  # no temporary file left behind
    assert cache.get(key) is not None


def test_entries_show_no_secrets_and_clear_removes(cache: CredentialCache) -> None:
    hub = make_hop()
    old = make_hop(role_arn="arn:aws:iam::111111111111:role/old", session_name="old")
    cache.put(hop_key(ROOT, hub), hub, creds(60))
    cache.put(hop_key(ROOT, old), old, creds(-5, key="ASIAOLD"))
    (cache.directory / ".tmp-leftover.json").write_text("partial")
    (cache.directory / "README").write_text("not ours")
    entries = list(cache.entries())
    assert [e.role_arn for e in entries] == [old.role_arn, hub.role_arn]  # by expiry
    shown = json.dumps([e.to_dict(NOW) for e in entries])
    assert "secret-" not in shown
    assert "token-" not in shown
    assert "ASIA" not in shown
    assert entries[1].to_dict(NOW)["remaining_seconds"] == 3600
    assert cache.clear(expired_only=True) == 2  # the expired entry and the leftover temp
    assert [e.role_arn for e in cache.entries()] == [hub.role_arn]
    assert cache.clear() == 1
    assert sorted(p.name for p in cache.directory.iterdir()) == ["README"]


def test_repr_hides_secrets() -> None:
    text = repr(creds(60))
    assert "secret-" not in text
    assert "token-" not in text


def test_record_format(cache: CredentialCache) -> None:
    key = hop_key(ROOT, make_hop())
    record = _valid_record(cache, key)
    assert record["format"] == CACHE_FORMAT
    assert record["hop"] == "ci -> hub"
    assert record["expiration"] == "2026-11-29T13:00:00Z"


def test_environment_settings(tmp_path: Path) -> None:
    assert default_cache_dir({"ROLECHAIN_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert default_cache_dir({}).parts[-2:] == ("rolechain", "credentials")
    assert cache_disabled_by_env({"ROLECHAIN_NO_CACHE": "1"})
    assert cache_disabled_by_env({"ROLECHAIN_NO_CACHE": "true"})
    assert not cache_disabled_by_env({"ROLECHAIN_NO_CACHE": "0"})
    assert not cache_disabled_by_env({})
