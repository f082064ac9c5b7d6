"""rolechain.model.references: whole-file checks on validated models."""

from __future__ import annotations

from typing import Any

import pytest

from rolechain.errors import Location
from rolechain.model.references import (
    MAX_LISTED,
    check,
    choices_text,
    diagnose_arn,
    region_partition,
    unknown,
)
from rolechain.model.schema import ChainFile


def model(**sections: Any) -> ChainFile:
    data: dict[str, Any] = {
        "principals": {"ci": {"source": "env"}, "mgmt": {"source": "env"}},
        "roles": {
            "hub": {"arn": "arn:aws:iam::111111111111:role/hub", "trusts": ["ci"]},
            "cn": {"arn": "arn:aws-cn:iam::111111111111:role/cn", "trusts": ["ci"]},
        },
        "role_sets": {
            "audit": {
                "role_name": "audit",
                "trusts": ["hub"],
                "accounts": ["222222222222", "333333333333"],
                "exclude": ["333333333333"],
            },
            "org": {"role_name": "audit", "trusts": ["hub"], "organization": {"via": "mgmt"}},
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ChainFile.model_validate(data)


def messages(chain: ChainFile, **kwargs: Any) -> list[str]:
    return [p.message for p in check(chain, {}, **kwargs)]


def test_a_consistent_model_has_no_problems() -> None:
    chain = model(
        jobs={
            "inv": {"from": "ci", "to": ["audit", "org@*", "hub"], "via": ["hub"]},
            "one": {"from": "ci", "to": "audit@222222222222", "regions": ["us-east-1"]},
            "glob": {"from": "ci", "to": "org@444444444444", "regions": "all"},
        }
    )
    assert check(chain, {}) == []


@pytest.mark.parametrize(
    "entry",
    [
        "ci",
        "hub",
        "audit",
        "audit@222222222222",
        "org@444444444444",
        "org@*",
        "arn:aws:iam::999999999999:root",
        "arn:aws:iam::999999999999:user/path/alice",
        "arn:aws-us-gov:iam::999999999999:role/x",
        "arn:aws:sts::999999999999:assumed-role/Admin/alice",
    ],
)
def test_valid_trust_entries(entry: str) -> None:
    chain = model(
        roles={"leaf": {"arn": "arn:aws:iam::5" + "0" * 11 + ":role/l", "trusts": [entry]}}
    )
    assert messages(chain) == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "hbu",
            "roles.leaf.trusts[0]: unknown principal, role or role set 'hbu'; valid: audit, ci, "
            "cn, hub, leaf, mgmt, org; did you mean 'hub'?",
        ),
        (
            "audit@444444444444",
            "roles.leaf.trusts[0]: 'audit@444444444444': account 444444444444 is not in role set "
            "'audit'; its accounts: 222222222222",
        ),
        (
            "audit@333333333333",
            "roles.leaf.trusts[0]: 'audit@333333333333': account 333333333333 is excluded from "
            "role set 'audit'",
        ),
        ("org@abc", "roles.leaf.trusts[0]: 'org@abc': 'abc' is not a 12-digit account id"),
        (
            "arn:aws:iam::1:root",
            "roles.leaf.trusts[0]: 'arn:aws:iam::1:root' is not an IAM principal ARN: the "
            "account '1' is not 12 digits (0-9)",
        ),
        (
            "arn:aws:s3:::bucket/x",
            "roles.leaf.trusts[0]: 'arn:aws:s3:::bucket/x' is not an IAM principal ARN: the "
            "service is 's3'; IAM ARNs have 'iam'",
        ),
    ],
)
def test_bad_trust_entries(entry: str, message: str) -> None:
    chain = model(
        roles={"leaf": {"arn": "arn:aws:iam::5" + "0" * 11 + ":role/l", "trusts": [entry]}}
    )
    assert messages(chain) == [message]


def test_ignored_names_count_as_defined() -> None:
    chain = model(
        roles={"leaf": {"arn": "arn:aws:iam::5" + "0" * 11 + ":role/l", "trusts": ["broken"]}},
        jobs={"inv": {"from": "badprincipal", "to": ["broken", "brokenset@*"], "via": ["broken"]}},
    )
    assert messages(chain, ignore={"broken", "badprincipal", "brokenset"}) == []
    assert len(messages(chain)) == 5


def test_job_from_must_be_a_principal() -> None:
    chain = model(jobs={"a": {"from": "hub", "to": "hub"}, "b": {"from": "audit", "to": "hub"}})
    problems = check(chain, {})
    assert [p.message for p in problems] == [
        "jobs.a.from: 'hub' is a role, not a principal; a job starts from a principal, the "
        "credentials you already hold",
        "jobs.b.from: 'audit' is a role set or member, not a principal; a job starts from a "
        "principal, the credentials you already hold",
    ]
    assert problems[0].hint == (
        "set 'from' to a principal that hub trusts and add 'hub' to 'via' to pass through it"
    )


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("hbu", "jobs.j.to: unknown target 'hbu'; valid: audit, cn, hub, org; did you mean 'hub'?"),
        ("ci", "jobs.j.to: 'ci' is a principal; 'to' names roles, role sets or members"),
        ("prod-*", "jobs.j.to: glob 'prod-*' matches no role or role-set member"),
        ("audti@*", "jobs.j.to: glob 'audti@*' matches no role or role-set member"),
        (
            "audti@222222222222",
            "jobs.j.to: unknown role set 'audti'; valid: audit, org; did you mean 'audit'?",
        ),
        (
            "audit@333333333333",
            "jobs.j.to: 'audit@333333333333': account 333333333333 is excluded from role set "
            "'audit'",
        ),
        ([], "jobs.j.to: names no targets; give a role, role set, member or glob"),
        (["hub", "nope"], "jobs.j.to[1]: unknown target 'nope'; valid: audit, cn, hub, org"),
    ],
)
def test_unmatched_selectors(to: object, message: str) -> None:
    chain = model(jobs={"j": {"from": "ci", "to": to}})
    assert messages(chain) == [message]


def test_via_entries() -> None:
    chain = model(
        jobs={"j": {"from": "ci", "to": "hub", "via": ["hub", "audit@222222222222", "ci", "hbu"]}}
    )
    assert messages(chain) == [
        "jobs.j.via[2]: 'ci' is a principal; 'via' lists the roles between 'from' and the target",
        "jobs.j.via[3]: unknown role 'hbu'; valid: audit, cn, hub, org; did you mean 'hub'?",
    ]


def test_organization_via() -> None:
    good = model(role_sets={"o2": {"role_name": "a", "organization": {"via": "hub"}}})
    assert messages(good) == []
    bad = model(role_sets={"o2": {"role_name": "a", "organization": {"via": "audit"}}})
    assert messages(bad) == [
        "role_sets.o2.organization.via: unknown principal or role 'audit'; valid: ci, cn, hub, mgmt"
    ]


def test_names_are_unique_across_sections_reported_at_the_later_one() -> None:
    chain = model(
        roles={"ci": {"arn": "arn:aws:iam::111111111111:role/ci"}},
        role_sets={"hub": {"role_name": "hub", "accounts": ["444444444444"]}},
    )
    sources = {
        ("principals", "ci"): Location("a.yaml", 3, 3),
        ("roles", "ci"): Location("a.yaml", 9, 3),
        ("roles", "hub"): Location("b.yaml", 2, 3),
        ("role_sets", "hub"): Location("a.yaml", 20, 3),
    }
    problems = check(chain, sources)
    assert [(str(p.location), p.message) for p in problems] == [
        (
            "a.yaml:9:3",
            "roles.ci: 'ci' is also defined as a principal at a.yaml:3:3; principals, roles and "
            "role sets share one namespace",
        ),
        (
            "b.yaml:2:3",
            "roles.hub: 'hub' is also defined as a role set at a.yaml:20:3; principals, roles "
            "and role sets share one namespace",
        ),
    ]


def test_regions_partition_and_duplicates() -> None:
    chain = model(
        jobs={
            "j": {
                "from": "ci",
                "to": "hub",
                "regions": ["us-east-1", "us-east-1", "cn-north-1"],
                "tasks": [{"task": "sts.get_caller_identity", "regions": ["us-gov-west-1"]}],
            },
            "china": {"from": "ci", "to": "cn", "regions": ["cn-northwest-1"]},
            "mixed": {"from": "ci", "to": ["cn", "hub"], "regions": ["us-east-1"]},
        }
    )
    assert messages(chain) == [
        "jobs.j.regions[1]: region 'us-east-1' is listed twice",
        "jobs.j.regions[2]: region 'cn-north-1' is in partition aws-cn, but the job's targets "
        "are in aws",
        "jobs.j.tasks[0].regions[0]: region 'us-gov-west-1' is in partition aws-us-gov, but "
        "the job's targets are in aws",
    ]


def test_locations_come_from_sources() -> None:
    chain = model(jobs={"j": {"from": "cj", "to": "hub"}})
    loc = Location("c.yaml", 7, 11)
    (problem,) = check(chain, {("jobs", "j"): Location("c.yaml", 5, 3), ("jobs", "j", "from"): loc})
    assert problem.location == loc
    assert problem.key == "jobs.j.from"
    (problem,) = check(chain, {("jobs", "j"): Location("c.yaml", 5, 3)})
    assert problem.location == Location("c.yaml", 5, 3)


def test_long_choice_lists_are_shortened() -> None:
    names = [f"role{i:03d}" for i in range(50)]
    text = choices_text(names)
    assert text.endswith(", ... (50 in all)")
    assert text.count(",") == MAX_LISTED
    assert unknown("role", "role01x", names).endswith("?")
    assert "; did you mean 'role0" in unknown("role", "role01x", names)
    assert choices_text([]) == "(none defined)"


@pytest.mark.parametrize(
    ("arn", "kind", "why"),
    [
        ("arn:aws:iam::123456789012:role/ok", "role", None),
        ("arn:aws:iam::123456789012:root", "principal", None),
        ("role/x", "role", "an ARN has six ':'-separated parts"),
        ("arn:aws-xx:iam::123456789012:role/x", "role", "unknown partition 'aws-xx'"),
        ("arn:aws:sts::123456789012:assumed-role/r/s", "role", "role session"),
        ("arn:aws:iam:us-east-1:123456789012:role/x", "role", "IAM ARNs have no region"),
        ("arn:aws:iam::12345678901:role/x", "role", "not 12 digits"),
        ("arn:aws:iam::123456789012:user/x", "role", "is not 'role/<name>'"),
        ("arn:aws:iam::123456789012:role/" + "x" * 65, "role", "65 characters"),
        ("arn:aws:iam::123456789012:role/a b", "role", "characters IAM does not allow"),
        ("arn:aws:iam::123456789012:group/x", "principal", "is not root, user/<name>"),
    ],
)
def test_diagnose_arn(arn: str, kind: str, why: str | None) -> None:
    found = diagnose_arn(arn, kind)
    if why is None:
        assert found is None
    else:
        assert found is not None
        assert why in found


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("eu-west-3", "aws"),
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-isob-east-1", "aws-isob"),
    ],
)
def test_region_partition(region: str, partition: str) -> None:
    assert region_partition(region) == partition


def test_root_principal_is_left_to_the_planner() -> None:
    chain = model(
        principals={"root": {"arn": "arn:aws:iam::111111111111:root"}},
        jobs={"j": {"from": "root", "to": "hub"}},
    )
    assert messages(chain) == []


def test_verify_readers_name_roles_or_role_sets() -> None:
    good = model(
        settings={"verify": {"reader": "audit"}},
        roles={"leaf": {"arn": "arn:aws:iam::222222222222:role/l", "verify": {"reader": "hub"}}},
    )
    assert messages(good) == []
    bad = model(
        settings={"verify": {"reader": "ci"}},
        role_sets={"other": {"role_name": "o", "accounts": ["222222222222"],
                             "verify": {"reader": "audi"}}},
    )  # fmt: skip
    assert messages(bad) == [
        "settings.verify.reader: unknown role or role set 'ci'; valid: audit, cn, hub, org, other",
        "role_sets.other.verify.reader: unknown role or role set 'audi'; valid: audit, cn, hub, "
        "org, other; did you mean 'audit'?",
    ]
