"""diff: by key, per target and region, and never about a target one of the runs does not
know. The property test compares it with the set difference computed independently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolechain.results.inventory import diff, runs_to_compare
from rolechain.results.store import Store

from .stores import ACCOUNTS, store_run

KEYS = st.sampled_from([f"k{n}" for n in range(8)])
ROW = st.fixed_dictionaries({"size": st.integers(0, 3), "tags": st.dictionaries(
    st.sampled_from(["team", "env"]), st.sampled_from(["a", "b"]), max_size=2)})  # fmt: skip
ROWS = st.dictionaries(st.sampled_from(ACCOUNTS), st.dictionaries(KEYS, ROW, max_size=6))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(a=ROWS, b=ROWS, failed=st.sets(st.sampled_from(ACCOUNTS), max_size=1))
def test_diff_is_the_set_difference(
    store_url: Path | str, a: Any, b: Any, failed: set[str]
) -> None:
    with Store(store_url) as store:
        store.query("DELETE FROM runs")  # each example from an empty store (records go too)
        store_run(store, "A", a, when="2026-01-01T00:00:00Z")
        store_run(store, "B", b, failed=failed, when="2026-01-02T00:00:00Z")
        found = diff(store, "inv", "A", "B")
    flat_a = {(acct, k): {"id": k, **r} for acct, rows in a.items() for k, r in rows.items()}
    flat_b = {(acct, k): {"id": k, **r} for acct, rows in b.items() for k, r in rows.items()}
    known = {(acct, k) for acct, k in flat_a.keys() | flat_b.keys() if acct not in failed}
    expected = (
        {("added", acct, k) for acct, k in known if (acct, k) in flat_b and (acct, k) not in flat_a}
        | {
            ("removed", acct, k)
            for acct, k in known
            if (acct, k) in flat_a and (acct, k) not in flat_b
        }
        | {
            ("changed", acct, k)
            for acct, k in known
            if (acct, k) in flat_a and (acct, k) in flat_b and flat_a[acct, k] != flat_b[acct, k]
        }
    )
    assert {(c.kind, c.account_id, c.key) for c in found.changes} == expected
    assert {u.account_id for u in found.unknown} == failed
    for change in found.changes:
        if change.kind == "changed":
            old, new = flat_a[change.account_id, change.key], flat_b[change.account_id, change.key]
            for name, before, after in change.fields:
                assert before != after or name.startswith("tags")
            assert {f[0].split(".")[0] for f in change.fields} == {
                k for k in old.keys() | new.keys() if old.get(k) != new.get(k)
            }
    assert found.changed == bool(expected)


def test_unknown_targets_failed_or_not_run_in_either_run(store_url: Path | str) -> None:
    rows = {acct: {"k1": {"size": 1}} for acct in ACCOUNTS}
    with Store(store_url) as store:
        store_run(store, "A", rows, failed={ACCOUNTS[0]}, when="2026-01-01T00:00:00Z")
        store_run(store, "B", {}, skipped={ACCOUNTS[1]}, when="2026-01-02T00:00:00Z")
        found = diff(store, "inv", "A", "B")
        assert runs_to_compare(store, None, None, None) == ("inv", "A", "B")
    # ACCOUNTS[0] failed in A, ACCOUNTS[1] was not run in B: neither is said to change;
    # ACCOUNTS[2] was known in both and lost its row.
    assert [(c.kind, c.account_id, c.key) for c in found.changes] == [
        ("removed", ACCOUNTS[2], "k1")
    ]
    reasons = {u.account_id: u.reason for u in found.unknown}
    assert set(reasons) == {ACCOUNTS[0], ACCOUNTS[1]}
    assert "AccessDenied" in reasons[ACCOUNTS[0]]
    assert "not run" in reasons[ACCOUNTS[1]]


def test_diff_exit_status_is_2_on_an_error(tmp_path: Path, store_url: Path | str) -> None:
    from click.testing import CliRunner

    from rolechain.cli import cli

    db = store_url
    with Store(db) as store:
        store_run(store, "A", {}, when="2026-01-01T00:00:00Z")
    for argv in (["diff", "nope"], ["diff"], ["results", "nope"]):  # no such run; one run only
        answer = CliRunner().invoke(cli, [*argv, "--store", str(db)])
        assert answer.exit_code == 2, (argv, answer.output)
    missing = CliRunner().invoke(cli, ["diff", "--store", str(tmp_path / "none.db")])
    assert missing.exit_code == 2
    assert "no run database" in missing.output
