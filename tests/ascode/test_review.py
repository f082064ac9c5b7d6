"""rolechain review: each kind of change with its exact review, the exit status, --git, and
a property: review says "access widened" exactly when some (principal, role) pair is
reachable in the new file and not in the old, by a breadth-first walk written here."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolechain.ascode.review import format_review, review_chains
from rolechain.cli import cli
from rolechain.model.loader import loads

BASE = """\
version: 1
principals:
  ci: {kind: user, arn: "arn:aws:iam::111111111111:user/ci"}
  dev: {kind: user, arn: "arn:aws:iam::111111111111:user/dev"}
roles:
  hub:
    arn: arn:aws:iam::222222222222:role/hub
    trusts: [ci]
    max_session_duration: 4h
role_sets:
  audit:
    role_name: audit
    trusts: [hub, "arn:aws:iam::999999999999:role/vendor-scanner"]
    external_id: ext-123456
    accounts: ["333333333333", "444444444444"]
jobs:
  inventory:
    from: ci
    to: audit
    tasks: [s3.list_buckets]
    schedule: "0 3 * * *"
"""


def _replace(old: str, new: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text
        return text.replace(old, new)

    return change


CHANGES: dict[str, Callable[[str], str]] = {
    "trust added": _replace("    trusts: [ci]\n", "    trusts: [ci, dev]\n"),
    "trust removed": _replace("    trusts: [ci]\n", "    trusts: []\n"),
    "role set grows": _replace(
        '["333333333333", "444444444444"]', '["333333333333", "444444444444", "555555555555"]'
    ),
    "ExternalId dropped": _replace("    external_id: ext-123456\n", ""),
    "* added": _replace("    trusts: [ci]\n", '    trusts: [ci, "*"]\n'),
    "hub inserted between": _replace(
        "role_sets:\n  audit:\n    role_name: audit\n    trusts: [hub,",
        "  hub2:\n    arn: arn:aws:iam::222222222222:role/hub2\n    trusts: [hub]\n"
        "role_sets:\n  audit:\n    role_name: audit\n    trusts: [hub2,",
    ),
    "duration raised past the cap": _replace(
        "    external_id: ext-123456\n",
        "    external_id: ext-123456\n    max_session_duration: 4h\n    duration: 2h\n",
    ),
    "schedule moved": _replace('"0 3 * * *"', '"30 4 * * *"\n    timezone: Europe/Berlin'),
}

EXPECTED_DIR = Path(__file__).parent / "reviews"
# Whether each change widens access; its exact review is reviews/<name>.txt.
WIDENS = {
    "trust added": True,
    "trust removed": False,
    "role set grows": True,
    "ExternalId dropped": True,
    "* added": True,
    "hub inserted between": True,
    "duration raised past the cap": False,
    "schedule moved": False,
}


def expected(name: str) -> str:
    file = name.replace(" ", "-").replace("*", "wildcard") + ".txt"
    return (EXPECTED_DIR / file).read_text(encoding="utf-8")


def review_text(name: str) -> tuple[bool, str]:
    old = loads(BASE, file="old.yaml")
    new = loads(CHANGES[name](BASE), file="new.yaml")
    review = review_chains(old, new, old_name="old.yaml", new_name="new.yaml")
    return review.widened, format_review(review)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_kind_of_change_has_its_exact_review(name: str) -> None:
    widened, text = review_text(name)
    assert widened is WIDENS[name]
    assert text == expected(name)


# --- the command ---------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "status"), [("trust added", 1), ("trust removed", 0), ("ExternalId dropped", 1)]
)
def test_exit_status_says_whether_access_widened(tmp_path: Path, name: str, status: int) -> None:
    old = write(tmp_path, "old.yaml", BASE)
    new = write(tmp_path, "new.yaml", CHANGES[name](BASE))
    result = CliRunner().invoke(cli, ["review", str(old), str(new)])
    assert result.exit_code == status, result.output
    assert result.stdout == expected(name).replace("old.yaml", str(old)).replace(
        "new.yaml", str(new)
    )


def test_unchanged_is_exit_0(tmp_path: Path) -> None:
    old = write(tmp_path, "old.yaml", BASE)
    result = CliRunner().invoke(cli, ["review", str(old), str(old)])
    assert result.exit_code == 0
    assert "access unchanged" in result.stdout


def test_json_and_markdown(tmp_path: Path) -> None:
    old = write(tmp_path, "old.yaml", BASE)
    new = write(tmp_path, "new.yaml", CHANGES["* added"](BASE))
    result = CliRunner().invoke(cli, ["review", str(old), str(new), "--format", "json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["widened"] is True
    assert {(g["principal"], g["role"]) for g in document["gained"]} >= {("*", "hub")}
    assert document["overtrust"][0]["kind"] == "wildcard"
    result = CliRunner().invoke(cli, ["review", str(old), str(new), "-f", "markdown"])
    assert result.exit_code == 1
    assert result.stdout.startswith("### rolechain review: :warning: access widened")
    assert "- + \\* → hub (1 hop)" in result.stdout  # '*' escaped, arrows drawn


@pytest.mark.parametrize(
    "argv",
    [
        ["review", "missing-old.yaml", "missing-new.yaml"],
        ["review", "only-one.yaml"],
    ],
)
def test_errors_exit_2(tmp_path: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "only-one.yaml", BASE)
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


def test_a_file_that_does_not_load_exits_2(tmp_path: Path) -> None:
    old = write(tmp_path, "old.yaml", BASE)
    bad = write(tmp_path, "new.yaml", BASE.replace("trusts: [ci]", "trusts: [nobody]"))
    result = CliRunner().invoke(cli, ["review", str(old), str(bad)])
    assert result.exit_code == 2
    assert "nobody" in result.stderr


def test_secrets_are_not_needed_and_not_shown(tmp_path: Path) -> None:
    text = BASE.replace("external_id: ext-123456", "external_id: ${env:AUDIT_EXTERNAL_ID}")
    old = write(tmp_path, "old.yaml", text)
    new = write(tmp_path, "new.yaml", CHANGES["role set grows"](text))
    result = CliRunner().invoke(
        cli, ["review", str(old), str(new)], env={"AUDIT_EXTERNAL_ID": None}
    )
    assert result.exit_code == 1, result.output
    with_secret = CliRunner().invoke(
        cli, ["review", str(old), str(new), "-f", "json"], env={"AUDIT_EXTERNAL_ID": "s3cr3t-value"}
    )
    assert "s3cr3t-value" not in with_secret.output


# --- --git -------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_compares_the_working_tree_with_a_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "chains").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    write(repo / "chains", "access.yaml", BASE)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    write(repo / "chains", "access.yaml", CHANGES["role set grows"](BASE))
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["review", "--git", "main"])
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("review main:chains -> chains: access widened: 2 ")
    assert "+ ci -> audit@555555555555" in result.stdout
    # A chain file the change adds: everything in it is new reach.
    write(repo / "chains", "more.yaml", "version: 1\nroles:\n  extra:\n    arn: "
          "arn:aws:iam::555555555555:role/extra\n    trusts: [dev]\n")  # fmt: skip
    result = CliRunner().invoke(cli, ["review", "--git", "main", "chains/more.yaml"])
    assert result.exit_code == 2  # alone, more.yaml names a principal it does not declare
    git(repo, "stash", "-u", "-q")
    result = CliRunner().invoke(cli, ["review", "--git", "main"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["review", "--git", "no-such-revision"])
    assert result.exit_code == 2
    assert "git rev-parse failed" in result.stderr


# --- the property ------------------------------------------------------------------------

PRINCIPALS = {"p0": "arn:aws:iam::111111111111:user/p0", "p1": "arn:aws:iam::111111111111:user/p1"}
ROLES = {f"r{i}": f"arn:aws:iam::22222222222{i}:role/r{i}" for i in range(4)}
SET_ACCOUNTS = ["333333333333", "444444444444"]
OUTSIDE = ["*", "arn:aws:iam::999999999999:root", "arn:aws:iam::999999999999:role/vendor"]
OWN_ROOT = "arn:aws:iam::111111111111:root"
ENTRIES = [*PRINCIPALS, *ROLES, "s", *[f"s@{a}" for a in SET_ACCOUNTS], *OUTSIDE, OWN_ROOT]

hop_spec = st.fixed_dictionaries(
    {"trusts": st.lists(st.sampled_from(ENTRIES), max_size=4, unique=True),
     "external_id": st.booleans()}
)  # fmt: skip
chain_spec = st.fixed_dictionaries(
    {**{name: hop_spec for name in ROLES}, "s": hop_spec}
)  # fmt: skip


def chain_text(spec: dict[str, dict[str, object]]) -> str:
    def hop(settings: dict[str, object]) -> dict[str, object]:
        out: dict[str, object] = {"trusts": settings["trusts"]}
        if settings["external_id"]:
            out["external_id"] = "ext-42"
        return out

    data = {
        "version": 1,
        "principals": {n: {"kind": "user", "arn": a} for n, a in PRINCIPALS.items()},
        "roles": {n: {"arn": ROLES[n], **hop(spec[n])} for n in ROLES},
        "role_sets": {"s": {"role_name": "s", "accounts": SET_ACCOUNTS, **hop(spec["s"])}},
    }
    return yaml.safe_dump(data)


def reachable(spec: dict[str, dict[str, object]]) -> set[tuple[str, str]]:
    """(who, role ARN) pairs, by a breadth-first walk over the spec itself. Outside
    identities trusted under an ExternalId are told apart from the same ones without."""
    members = {f"s@{a}": f"arn:aws:iam::{a}:role/s" for a in SET_ACCOUNTS}
    arn = {**PRINCIPALS, **ROLES, **members}
    targets = {**{n: [n] for n in ROLES}, "s": list(members)}
    callers: dict[str, set[str]] = {node: set() for node in arn}  # role -> who it trusts
    starts: dict[tuple[str, bool], set[str]] = {}  # outside identity -> roles trusting it
    for owner, hop in spec.items():
        for entry in hop["trusts"]:  # type: ignore[attr-defined]
            if entry in arn:
                who = {entry}
            elif entry == "s":
                who = set(members)
            elif entry == OWN_ROOT:
                who = set(PRINCIPALS)
            elif entry == "*":
                who = set(arn)
            else:
                who = set()
            for node in targets[owner]:
                callers[node] |= who
                if entry in OUTSIDE:
                    guarded = bool(hop["external_id"]) and entry != "*"
                    starts.setdefault((entry, guarded), set()).add(node)
    children: dict[str, set[str]] = {node: set() for node in arn}
    for node, who in callers.items():
        for caller in who:
            children[caller].add(node)

    def walk(first: set[str]) -> set[str]:
        seen, queue = set(first), deque(first)
        while queue:
            for child in children[queue.popleft()]:
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
        return seen

    pairs = set()
    for principal in PRINCIPALS:
        pairs |= {(principal, arn[n]) for n in walk(set(children[principal]))}
    for key, first in starts.items():
        pairs |= {(str(key), arn[n]) for n in walk(first)}
    return pairs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain_spec, chain_spec)
def test_widened_exactly_when_some_pair_becomes_reachable(
    a: dict[str, dict[str, object]], b: dict[str, dict[str, object]]
) -> None:
    review = review_chains(loads(chain_text(a)), loads(chain_text(b)))
    assert review.widened == bool(reachable(b) - reachable(a))
    assert bool(review.lost) == bool(reachable(a) - reachable(b))
