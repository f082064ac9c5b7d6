"""rolechain.model.targets: node names and expansion of ``to`` selectors."""

from __future__ import annotations

import pytest

from rolechain.model.schema import ChainFile
from rolechain.model.targets import (
    DISCOVERED,
    expand_targets,
    is_discoverable_member,
    member_name,
    no_match_message,
    set_members,
    split_member,
    target_names,
)

MODEL = ChainFile.model_validate(
    {
        "roles": {
            "hub": {"arn": "arn:aws:iam::111111111111:role/hub"},
            "prod-web": {"arn": "arn:aws:iam::222222222222:role/web"},
            "prod-db": {"arn": "arn:aws:iam::333333333333:role/db"},
        },
        "role_sets": {
            "audit": {
                "role_name": "audit",
                "accounts": ["444444444444", "555555555555", "666666666666"],
                "exclude": ["666666666666"],
            },
            "org": {
                "role_name": "audit",
                "organization": {"via": "hub", "exclude": ["777777777777"]},
                "exclude": ["888888888888"],
            },
        },
    }
)


def test_member_names() -> None:
    assert member_name("audit", "444444444444") == "audit@444444444444"
    assert split_member("audit@444444444444") == ("audit", "444444444444")
    assert split_member("hub") is None
    assert DISCOVERED == "*"


def test_set_members_listed_resolved_and_placeholder() -> None:
    assert set_members(MODEL, "audit") == ["audit@444444444444", "audit@555555555555"]
    assert set_members(MODEL, "org") == ["org@*"]
    resolved = {"org": ["111111111111", "777777777777", "888888888888", "999999999999"]}
    assert set_members(MODEL, "org", resolved) == ["org@111111111111", "org@999999999999"]


def test_target_names_roles_first_then_members() -> None:
    assert target_names(MODEL) == [
        "hub",
        "prod-db",
        "prod-web",
        "audit@444444444444",
        "audit@555555555555",
        "org@*",
    ]


@pytest.mark.parametrize(
    ("selectors", "targets", "unmatched"),
    [
        (["hub"], ["hub"], []),
        (["audit"], ["audit@444444444444", "audit@555555555555"], []),
        (["audit@555555555555"], ["audit@555555555555"], []),
        (["audit@666666666666"], [], ["audit@666666666666"]),  # excluded
        (["audit@999999999999"], [], ["audit@999999999999"]),
        (["prod-*"], ["prod-db", "prod-web"], []),
        (["prod-?eb"], ["prod-web"], []),
        (["prod-[d]*"], ["prod-db"], []),
        (["audit@*"], ["audit@444444444444", "audit@555555555555"], []),
        (["org"], ["org@*"], []),
        (["org@*"], ["org@*"], []),
        (["org@12345678901?"], ["org@*"], []),  # an org set's members are unknown offline
        (["org@999999999999"], ["org@999999999999"], []),
        (["hub", "hub", "prod-*", "prod-web"], ["hub", "prod-db", "prod-web"], []),
        (["nope", "x-*", "hub"], ["hub"], ["nope", "x-*"]),
        # A glob over a listed set that matches no member is unmatched, never "every member".
        (["audit@9*"], [], ["audit@9*"]),
        (["audit@4*", "audit@9*"], ["audit@444444444444"], ["audit@9*"]),
        ([], [], []),
    ],
)
def test_expand_targets(selectors: list[str], targets: list[str], unmatched: list[str]) -> None:
    assert expand_targets(MODEL, selectors) == (targets, unmatched)


def test_expand_with_resolved_organization() -> None:
    resolved = {"org": ["111111111111", "222222222222"]}
    assert expand_targets(MODEL, ["org"], resolved) == (
        ["org@111111111111", "org@222222222222"],
        [],
    )
    assert expand_targets(MODEL, ["org@2*"], resolved) == (["org@222222222222"], [])
    # Once the accounts are listed, a glob that matches none of them is unmatched.
    assert expand_targets(MODEL, ["org@9*"], resolved) == ([], ["org@9*"])


def test_no_match_message_lists_the_members() -> None:
    text = no_match_message(MODEL, "audit@9*")
    assert text is not None
    assert "matches none of the 2 members of role set audit" in text
    assert "audit@444444444444, audit@555555555555" in text
    resolved = {"org": ["111111111111"]}
    text = no_match_message(MODEL, "org@9*", resolved)
    assert text is not None
    assert "accounts AWS Organizations listed" in text
    assert no_match_message(MODEL, "prod-x*") is None


def test_members_of_an_organization_set_must_be_real_accounts_not_excluded() -> None:
    model = ChainFile.model_validate(
        {
            "roles": {"hub": {"arn": "arn:aws:iam::111111111111:role/hub"}},
            "role_sets": {
                "org": {
                    "role_name": "audit",
                    "exclude": ["444444444444"],
                    "organization": {"via": "hub", "exclude": ["555555555555"]},
                }
            },
        }
    )
    selectors = ["org@333333333333", "org@444444444444", "org@555555555555", "org@123"]
    targets, unmatched = expand_targets(model, selectors)
    assert targets == ["org@333333333333"]
    assert unmatched == ["org@444444444444", "org@555555555555", "org@123"]
    assert is_discoverable_member(model, "org@333333333333")
    assert not is_discoverable_member(model, "hub@333333333333")
