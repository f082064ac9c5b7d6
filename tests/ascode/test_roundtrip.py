"""Round trip: rendered IAM JSON provisioned into the sandbox (``--provision DIR``) is what
the chain file says (``verify``: no drift, no over-trust), and ``discover`` on it gives back
a chain file whose render is the same policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rolechain.cli import cli

from .test_render import CHAIN

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "chains" / "demo.yaml"
DEMO_ENV = {"INVENTORY_AUDIT_EXTERNAL_ID": "rolechain-demo"}
ACCOUNTS = "222222222222,333333333333,444444444444,555555555555,666666666666,777777777777"


def invoke(argv: list[str], env: dict[str, str | None] | None = None) -> Any:
    return CliRunner().invoke(cli, argv, env=env)


def rendered(chain: Path, out: Path, env: dict[str, str | None] | None = None) -> Path:
    result = invoke(["render", str(chain), "--to", "iam-json", "--output", str(out)], env)
    assert result.exit_code == 0, result.output
    return out


def policies(out: Path) -> dict[str, tuple[int, Any]]:
    """ARN -> (MaxSessionDuration, trust policy), principals in order: what IAM enforces
    (descriptions are comments in a discovered file)."""
    found: dict[str, tuple[int, Any]] = {}
    for role in json.loads((out / "roles.json").read_text())["Roles"]:
        document = role["AssumeRolePolicyDocument"]
        for statement in document["Statement"]:
            aws = (
                statement["Principal"].get("AWS")
                if isinstance(statement["Principal"], dict)
                else None
            )
            if isinstance(aws, list):
                statement["Principal"]["AWS"] = sorted(aws)
        found[role["Arn"]] = (role["MaxSessionDuration"], document)
    return found


@pytest.mark.slow
@pytest.mark.usefixtures("aws")  # moto's state is per process: start from a clean one
def test_demo_renders_provisions_verifies_and_discovers_back(tmp_path: Path) -> None:
    iam = rendered(DEMO, tmp_path / "iam")
    verify = invoke(["verify", str(DEMO), "--sandbox", "--provision", str(iam)], DEMO_ENV)
    assert verify.exit_code == 0, verify.output
    assert "verified 18 hops of 3 jobs: 18 ok, 0 drift, 0 unassumable, 0 unreadable; " \
        "findings: none;" in verify.stdout  # fmt: skip

    discovered = tmp_path / "discovered.yaml"
    found = invoke(
        ["discover", "--sandbox", str(DEMO), "--provision", str(iam), "--from", "inventory-bot",
         "--reader", "audit/Reader", "--account", ACCOUNTS, "--output", str(discovered)],
        DEMO_ENV,
    )  # fmt: skip
    assert found.exit_code == 0, found.output
    again = rendered(discovered, tmp_path / "again")
    assert policies(again) == policies(iam)
    assert len(policies(iam)) == 12
    # The discovered file is the same access, too.
    review = invoke(["review", str(DEMO), str(discovered)])
    assert review.exit_code == 0, review.output
    assert "access unchanged" in review.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_tags_source_identity_and_external_ids_pass_the_sandbox(tmp_path: Path) -> None:
    """The sandbox enforces sts:TagSession, sts:SetSourceIdentity and ExternalIds: the
    rendered statements are the ones the chain's hops need, and verify finds no drift."""
    chain = tmp_path / "chain.yaml"
    chain.write_text(CHAIN, encoding="utf-8")
    env: dict[str, str | None] = {
        "VENDOR_EXTERNAL_ID": "vendor-s3cr3t-9f1c",
        "INVENTORY_AUDIT_EXTERNAL_ID": "literal-ext-id-0001",
    }
    iam = rendered(chain, tmp_path / "iam", env)
    verify = invoke(["verify", str(chain), "--sandbox", "--provision", str(iam)], env)
    assert verify.exit_code == 0, verify.output
    assert "3 ok, 0 drift" in verify.stdout
    assert "vendor-s3cr3t-9f1c" not in verify.output

    # Rendered without the tag statements, the sandbox refuses the tagged hop.
    roles = json.loads((iam / "roles.json").read_text())
    for role in roles["Roles"]:
        statements = role["AssumeRolePolicyDocument"]["Statement"]
        role["AssumeRolePolicyDocument"]["Statement"] = [
            s for s in statements if s["Action"] != "sts:TagSession"
        ]
    (iam / "roles.json").write_text(json.dumps(roles))
    verify = invoke(["verify", str(chain), "--sandbox", "--provision", str(iam)], env)
    assert verify.exit_code == 1
    assert "unassumable ci -> hub: AccessDenied" in verify.stdout


def test_an_unset_placeholder_is_an_error_that_names_it(tmp_path: Path) -> None:
    iam = rendered(DEMO, tmp_path / "iam")
    result = invoke(
        ["verify", str(DEMO), "--sandbox", "--provision", str(iam)],
        {"INVENTORY_AUDIT_EXTERNAL_ID": None},
    )
    assert result.exit_code == 2
    assert "environment variable INVENTORY_AUDIT_EXTERNAL_ID is not set" in result.stderr


def test_provision_takes_list_roles_output(tmp_path: Path) -> None:
    """Any JSON of roles in IAM's shape works, e.g. ``aws iam list-roles`` output."""
    from rolechain.errors import UsageError
    from rolechain.sandbox.sources import provision_source

    listing = tmp_path / "roles.json"
    listing.write_text(
        json.dumps(
            [{"Arn": "arn:aws:iam::222222222222:role/x", "AssumeRolePolicyDocument":
              "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D"}]
        )
    )  # fmt: skip
    source = provision_source(listing, env={})
    assert source.roles[0]["Arn"] == "arn:aws:iam::222222222222:role/x"
    assert not source.chain.model.roles
    (tmp_path / "bad.json").write_text('{"Roles": 3}')
    with pytest.raises(UsageError, match="expected"):
        provision_source(tmp_path / "bad.json", env={})


@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_a_declared_wildcard_is_provisioned_and_verify_calls_it_over_trust(tmp_path: Path) -> None:
    chain = tmp_path / "chain.yaml"
    chain.write_text(CHAIN.replace("trusts: [ci, runner]", 'trusts: [ci, runner, "*"]'))
    env: dict[str, str | None] = {
        "VENDOR_EXTERNAL_ID": "vendor-s3cr3t-9f1c",
        "INVENTORY_AUDIT_EXTERNAL_ID": "literal-ext-id-0001",
    }
    verify = invoke(["verify", str(chain), "--sandbox", "--job", "inventory"], env)
    assert verify.exit_code == 1, verify.output
    assert "critical  trust-wildcard" in verify.stdout
