from __future__ import annotations

from typing import Any

import pytest

from rolechain.aws.organizations import Organizations, discover, is_active, tags_match
from rolechain.aws.retry import RetryPolicy
from rolechain.aws.session import AwsSessions, static_credentials
from rolechain.planner.plan import Discovery

from .fakes import FAKE_KEY, FAKE_SECRET, Faults


def make_org(sessions: AwsSessions) -> dict[str, Any]:
    """root -> ou-prod -> ou-prod-eu; 3 accounts in prod, 2 in prod-eu, 2 at the root."""
    org = sessions.client("organizations", "us-east-1", static_credentials(FAKE_KEY, FAKE_SECRET))
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    prod = org.create_organizational_unit(ParentId=root, Name="prod")["OrganizationalUnit"]["Id"]
    eu = org.create_organizational_unit(ParentId=prod, Name="prod-eu")["OrganizationalUnit"]["Id"]

    def account(name: str, parent: str, tags: dict[str, str]) -> str:
        status = org.create_account(
            AccountName=name,
            Email=f"{name}@example.com",
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )["CreateAccountStatus"]
        account_id = status["AccountId"]
        if parent != root:
            org.move_account(AccountId=account_id, SourceParentId=root, DestinationParentId=parent)
        return account_id

    ids = {
        "p1": account("p1", prod, {"env": "prod"}),
        "p2": account("p2", prod, {"env": "prod", "team": "data"}),
        "p3": account("p3", prod, {"env": "staging"}),
        "e1": account("e1", eu, {"env": "prod"}),
        "e2": account("e2", eu, {"env": "dev"}),
        "r1": account("r1", root, {"env": "prod"}),
        "r2": account("r2", root, {}),
    }
    return {"client": org, "root": root, "prod": prod, "eu": eu, "ids": ids}


@pytest.fixture
def org(aws) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    sessions = AwsSessions()
    made = make_org(sessions)
    made["orgs"] = Organizations(
        sessions, static_credentials(FAKE_KEY, FAKE_SECRET), policy=RetryPolicy(attempts=1)
    )
    return made


def test_ous_are_walked_recursively(org) -> None:  # type: ignore[no-untyped-def]
    ids = org["ids"]
    found = discover(Discovery("audit", via="ci", via_hop=None, ous=(org["prod"],)), org["orgs"])
    assert found == sorted([ids["p1"], ids["p2"], ids["p3"], ids["e1"], ids["e2"]])


def test_no_ous_lists_the_whole_organization(org) -> None:  # type: ignore[no-untyped-def]
    found = discover(Discovery("audit", via="ci", via_hop=None), org["orgs"])
    assert set(org["ids"].values()) <= set(found)
    assert "123456789012" in found  # the management account is a member too
    assert len(found) == 8


def test_tags_and_excludes(org) -> None:  # type: ignore[no-untyped-def]
    ids = org["ids"]
    discovery = Discovery(
        "audit",
        via="ci",
        via_hop=None,
        ous=(org["root"],),
        tags=(("env", ("prod", "staging")),),
        exclude=(ids["p3"],),
    )
    assert discover(discovery, org["orgs"]) == sorted([ids["p1"], ids["p2"], ids["e1"], ids["r1"]])


def test_pagination_is_followed(aws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sessions = AwsSessions()
    made = make_org(sessions)
    # Real AWS pages ListAccountsForParent; ask for pages of 1 through a before-call hook.
    client = sessions.client(
        "organizations", "us-east-1", static_credentials(FAKE_KEY, FAKE_SECRET)
    )

    def small_pages(params: dict[str, Any], **_: Any) -> None:
        params.setdefault("MaxResults", 1)

    client.meta.events.register(
        "provide-client-params.organizations.ListAccountsForParent", small_pages
    )
    faults = Faults(lambda op, request: None)
    client.meta.events.register("before-send", faults._before_send)
    orgs = Organizations(sessions, static_credentials(FAKE_KEY, FAKE_SECRET))
    orgs.credentials = client._request_signer._credentials
    found = discover(Discovery("audit", via="ci", via_hop=None, ous=(made["prod"],)), orgs)
    assert len(found) == 5
    assert faults.seen["ListAccountsForParent"] > 2  # more than one page per OU


def test_active_and_tags_helpers() -> None:
    assert is_active({"State": "ACTIVE"})
    assert is_active({"Status": "ACTIVE"})
    assert not is_active({"State": "SUSPENDED"})
    assert not is_active({"Status": "PENDING_CLOSURE"})
    assert tags_match({"env": "prod"}, (("env", ("prod",)),))
    assert not tags_match({}, (("env", ("prod",)),))


def test_suspended_accounts_are_skipped(org) -> None:  # type: ignore[no-untyped-def]
    ids = org["ids"]
    org["client"].close_account(AccountId=ids["r2"])
    found = discover(Discovery("audit", via="ci", via_hop=None), org["orgs"])
    assert ids["r2"] not in found
    assert ids["r1"] in found
