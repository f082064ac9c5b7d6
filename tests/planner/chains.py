"""Build chains for tests without the YAML loader: every key gets a made-up line number."""

from __future__ import annotations

from typing import Any

from rolechain.errors import Location
from rolechain.model.chain import Chain, PathKey
from rolechain.model.schema import ChainFile

FILE = "chain.yaml"


def source_map(data: Any) -> dict[PathKey, Location]:
    """Each key path gets the next line number, in document order (as YAML would)."""
    out: dict[PathKey, Location] = {}

    def walk(value: Any, path: PathKey) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                key_path = (*path, key)
                out[key_path] = Location(FILE, len(out) + 1, 1)
                walk(item, key_path)

    walk(data, ())
    return out


def make_chain(data: dict[str, Any]) -> Chain:
    return Chain(model=ChainFile.model_validate(data), sources=source_map(data), files=(FILE,))


def acct(n: int) -> str:
    return f"{n:012d}"


def role_arn(account: str | int, name: str, partition: str = "aws") -> str:
    if isinstance(account, int):
        account = acct(account)
    return f"arn:{partition}:iam::{account}:role/{name}"


def hub_chain(
    *,
    members: int = 3,
    principal_kind: str = "session",
    hub: dict[str, Any] | None = None,
    audit: dict[str, Any] | None = None,
    job: dict[str, Any] | None = None,
    extra_roles: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """ci -> hub -> audit@<members accounts>: the usual fan-out shape."""
    data: dict[str, Any] = {
        "principals": {"ci": {"kind": principal_kind, "account": acct(1)}},
        "roles": {
            "hub": {"arn": role_arn(1, "hub"), "trusts": ["ci"], **(hub or {})},
            **(extra_roles or {}),
        },
        "role_sets": {
            "audit": {
                "role_name": "audit",
                "accounts": [acct(100 + i) for i in range(members)],
                "trusts": ["hub"],
                **(audit or {}),
            }
        },
        "jobs": {"inv": {"from": "ci", "to": "audit", **(job or {})}},
    }
    if settings:
        data["settings"] = settings
    return data
