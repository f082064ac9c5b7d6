"""Where a sandbox's roles come from (``--provision OTHER``): a chain file, or IAM JSON.

IAM JSON is what ``rolechain render --to iam-json`` writes (a directory holding
``roles.json``), or any JSON file of roles in IAM's own shape: ``{"Roles": [...]}`` as ``aws
iam list-roles`` prints it, or a list of such roles, each with its ``Arn``. Provisioning
from it creates exactly those roles with exactly those trust policies, as ``terraform
apply`` of the same policies would. ``${env:NAME}`` placeholders in it (the ExternalIds
``render`` never writes) are filled in from the environment now, at "apply" time; an
unset one is an error. Values read that way are never printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolechain.errors import UsageError
from rolechain.model.chain import Chain
from rolechain.model.schema import ChainFile
from rolechain.model.yamlsource import interpolate

ROLES_FILE = "roles.json"


@dataclass(frozen=True)
class ProvisionSource:
    """Roles and trusts to provision: a chain's, and roles in IAM's shape."""

    chain: Chain
    roles: tuple[Mapping[str, Any], ...] = field(default=())


def provision_source(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> ProvisionSource:
    """Read ``path``: IAM JSON (a ``.json`` file, or a directory holding ``roles.json``) or
    chain files. ``env`` fills ``${env:NAME}`` placeholders (default: ``os.environ``)."""
    where = Path(path)
    file = where / ROLES_FILE if where.is_dir() else where
    if file.suffix == ".json" and file.is_file():
        return ProvisionSource(Chain(ChainFile()), tuple(read_roles(file, env)))
    from rolechain.model.loader import load

    return ProvisionSource(load(where))


def read_roles(file: Path, env: Mapping[str, str] | None = None) -> list[Mapping[str, Any]]:
    """The roles of an IAM JSON file, placeholders filled in."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{file}: not readable as JSON: {exc}") from None
    roles = data.get("Roles") if isinstance(data, dict) else data
    if not isinstance(roles, list) or not all(isinstance(r, dict) for r in roles):
        raise UsageError(f'{file}: expected {{"Roles": [...]}} or a list of roles')
    environ = os.environ if env is None else env
    errors: list[str] = []

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            done = interpolate(value, environ)
            errors.extend(done.errors)
            return done.text
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    filled = [fill(role) for role in roles]
    if errors:
        raise UsageError(f"{file}: " + "; ".join(dict.fromkeys(errors)))
    return filled
