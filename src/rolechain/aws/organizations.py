"""Accounts of a role set discovered from AWS Organizations at run time.

For each :class:`~rolechain.planner.plan.Discovery` of a plan: with OUs, walk each OU
recursively (``ListOrganizationalUnitsForParent``) and list the accounts directly in each
(``ListAccountsForParent``); without OUs, ``ListAccounts``. Every list call is paginated
with botocore's paginators (real AWS pages at 20 accounts). Only ACTIVE accounts are kept
(the ``State`` field, or the older ``Status``); tag filters use ``ListTagsForResource``
(a list of values means any of them); excluded accounts are dropped. The result feeds the
planner again as ``resolved={role_set: accounts}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from rolechain.aws.calls import call_with_retries
from rolechain.aws.errors import aws_call
from rolechain.aws.session import ServiceCalls
from rolechain.errors import AwsContext
from rolechain.planner.plan import Discovery


class Organizations(ServiceCalls):
    """Organizations calls with one set of credentials (the ``via`` hop's)."""

    service = "organizations"

    def _pages(self, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        context = AwsContext(hop=self.hop, operation=f"organizations:{operation}")

        def call() -> list[dict[str, Any]]:
            with aws_call(context):
                paginator = self.client().get_paginator(operation)
                items: list[dict[str, Any]] = []
                for page in paginator.paginate(**params):
                    items.extend(page.get(key, []))
                return items

        return call_with_retries(call, self.policy, stats=self.stats)

    def accounts(self, ous: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Account entries under ``ous`` (recursively), or of the whole organization."""
        if not ous:
            return self._pages("list_accounts", "Accounts")
        found: dict[str, dict[str, Any]] = {}
        for account in self._walk(ous):
            found.setdefault(account["Id"], account)
        return list(found.values())

    def _walk(self, ous: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        pending = list(ous)
        seen: set[str] = set()
        while pending:
            parent = pending.pop(0)
            if parent in seen:
                continue
            seen.add(parent)
            yield from self._pages("list_accounts_for_parent", "Accounts", ParentId=parent)
            children = self._pages(
                "list_organizational_units_for_parent", "OrganizationalUnits", ParentId=parent
            )
            pending.extend(ou["Id"] for ou in children)

    def organization_id(self) -> str:
        """The organization's id (``o-...``), what ``aws:PrincipalOrgID`` holds for every
        identity of its accounts."""
        context = AwsContext(hop=self.hop, operation="organizations:DescribeOrganization")

        def call() -> str:
            with aws_call(context):
                return str(self.client().describe_organization()["Organization"]["Id"])

        return call_with_retries(call, self.policy, stats=self.stats)

    def tags(self, account_id: str) -> dict[str, str]:
        entries = self._pages("list_tags_for_resource", "Tags", ResourceId=account_id)
        return {t["Key"]: t["Value"] for t in entries}


def is_active(account: dict[str, Any]) -> bool:
    state = account.get("State") or account.get("Status")
    return state == "ACTIVE"


def tags_match(tags: dict[str, str], wanted: tuple[tuple[str, tuple[str, ...]], ...]) -> bool:
    return all(tags.get(key) in values for key, values in wanted)


def discover(
    discovery: Discovery,
    organizations: Organizations,
    *,
    tags_of: Callable[[str], dict[str, str]] | None = None,
) -> list[str]:
    """Account ids of ``discovery``: active, matching its tags, less its excludes. Sorted."""
    excluded = set(discovery.exclude)
    candidates = [
        a["Id"]
        for a in organizations.accounts(discovery.ous)
        if is_active(a) and a["Id"] not in excluded
    ]
    if discovery.tags:
        lookup = tags_of or organizations.tags
        candidates = [a for a in candidates if tags_match(lookup(a), discovery.tags)]
    return sorted(set(candidates))
