"""rolechain render: every format checked by a real validator.

IAM JSON by IAM's policy grammar (a JSON Schema of the trust-policy subset written from the
IAM user guide's "Grammar of the IAM JSON policy language") and by the project's trust
evaluator; CloudFormation by cfn-lint; Terraform parsed by python-hcl2 and checked for its
structure (a provider alias and a module per account, sensitive ExternalId variables, each
trust policy once). No output holds an ExternalId.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import jsonschema
import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.policy import Caller, assume_role_context, evaluate

CHAIN = """\
version: 1
principals:
  ci: {kind: user, arn: "arn:aws:iam::111111111111:user/ci"}
  runner: {kind: session, arn: "arn:aws:sts::111111111111:assumed-role/gh-runner/build-1"}
roles:
  hub:
    description: The platform hub.
    arn: arn:aws:iam::222222222222:role/platform/hub
    trusts: [ci, runner]
    max_session_duration: 4h
    duration: 1h
    source_identity: ci-pipeline
    tags: {team: platform}
    transitive_tag_keys: [team]
  vendor:
    arn: arn:aws:iam::222222222222:role/vendor-access
    trusts: ["arn:aws:iam::999999999999:root"]
    external_id: ${env:VENDOR_EXTERNAL_ID}
role_sets:
  audit:
    description: Read-only audit, ${env:NOT_A_SECRET:-in every account}.
    role_name: audit/InventoryAudit
    trusts: [hub]
    external_id: literal-ext-id-0001
    accounts: ["333333333333", "444444444444"]
jobs:
  inventory:
    from: ci
    to: audit
    via: [hub]
    tasks: [sts.get_caller_identity]
"""
SECRET = "vendor-s3cr3t-9f1c"
ENV = {"VENDOR_EXTERNAL_ID": SECRET}
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")  # installed by the dev extra
AUDIT_ARNS = [
    f"arn:aws:iam::{a}:role/audit/InventoryAudit" for a in ("333333333333", "444444444444")
]

# IAM's grammar for a trust policy (a resource policy without Resource).
STRINGS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
IAM_TRUST_POLICY = {
    "type": "object",
    "required": ["Version", "Statement"],
    "additionalProperties": False,
    "properties": {
        "Version": {"enum": ["2012-10-17", "2008-10-17"]},
        "Id": {"type": "string"},
        "Statement": {
            "oneOf": [
                {"$ref": "#/definitions/statement"},
                {"type": "array", "items": {"$ref": "#/definitions/statement"}},
            ]
        },
    },
    "definitions": {
        "statement": {
            "type": "object",
            "required": ["Effect"],
            "additionalProperties": False,
            "oneOf": [{"required": ["Principal"]}, {"required": ["NotPrincipal"]}],
            "allOf": [{"oneOf": [{"required": ["Action"]}, {"required": ["NotAction"]}]}],
            "properties": {
                "Sid": {"type": "string", "pattern": "^[A-Za-z0-9]*$"},
                "Effect": {"enum": ["Allow", "Deny"]},
                "Principal": {"$ref": "#/definitions/principal"},
                "NotPrincipal": {"$ref": "#/definitions/principal"},
                "Action": {"$ref": "#/definitions/actions"},
                "NotAction": {"$ref": "#/definitions/actions"},
                "Condition": {
                    "type": "object",
                    "propertyNames": {"pattern": "^(For(All|Any)Value:)?[A-Za-z]+$"},
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": {
                            "oneOf": [
                                {"type": ["string", "boolean", "number"]},
                                {
                                    "type": "array",
                                    "items": {"type": ["string", "boolean", "number"]},
                                },
                            ]
                        },
                    },
                },
            },
        },
        "principal": {
            "oneOf": [
                {"const": "*"},
                {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "AWS": {
                            "oneOf": [
                                {"$ref": "#/definitions/aws_principal"},
                                {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {"$ref": "#/definitions/aws_principal"},
                                },
                            ]
                        },
                        "Service": STRINGS,
                        "Federated": STRINGS,
                        "CanonicalUser": STRINGS,
                    },
                },
            ]
        },
        # Principal ARNs take no wildcard but the whole value "*".
        "aws_principal": {
            "type": "string",
            "pattern": r"^(\*|[0-9]{12}|arn:aws[a-z-]*:(iam::[0-9]{12}:(root|user/[^*?]+|"
            r"role/[^*?]+)|sts::[0-9]{12}:assumed-role/[^*?/]+/[^*?/]+))$",
        },
        "actions": {
            "oneOf": [
                {"type": "string", "pattern": r"^(\*|[a-z0-9-]+:[A-Za-z0-9*?]+)$"},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": r"^(\*|[a-z0-9-]+:[A-Za-z0-9*?]+)$"},
                },
            ]
        },
    },
}


def render(tmp_path: Path, fmt: str, *extra: str, env: dict[str, str] | None = None) -> Path:
    chain = tmp_path / "chain.yaml"
    chain.write_text(CHAIN, encoding="utf-8")
    out = tmp_path / fmt
    result = CliRunner().invoke(
        cli, ["render", str(chain), "--to", fmt, "--output", str(out), *extra], env=env or ENV
    )
    assert result.exit_code == 0, result.output
    return out


def all_text(directory: Path) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8") for p in sorted(directory.rglob("*")) if p.is_file()
    )


@pytest.mark.parametrize("fmt", ["terraform", "cloudformation", "iam-json"])
def test_no_output_holds_an_external_id(tmp_path: Path, fmt: str) -> None:
    out = render(tmp_path, fmt)
    text = all_text(out)
    assert SECRET not in text
    assert "literal-ext-id-0001" not in text  # written in the file, still not rendered


# --- IAM JSON ------------------------------------------------------------------------------


def roles_by_arn(out: Path) -> dict[str, dict[str, Any]]:
    return {r["Arn"]: r for r in json.loads((out / "roles.json").read_text())["Roles"]}


def test_iam_json_follows_iams_grammar_and_says_what_the_chain_says(tmp_path: Path) -> None:
    out = render(tmp_path, "iam-json")
    roles = roles_by_arn(out)
    assert sorted(roles) == sorted(
        [*AUDIT_ARNS, "arn:aws:iam::222222222222:role/platform/hub",
         "arn:aws:iam::222222222222:role/vendor-access"]
    )  # fmt: skip
    policies = sorted(p.name for p in (out / "trust-policies").iterdir())
    assert policies == ["role-hub.json", "role-set-audit.json", "role-vendor.json"]  # once each
    for role in roles.values():
        jsonschema.validate(role["AssumeRolePolicyDocument"], IAM_TRUST_POLICY)
    hub = roles["arn:aws:iam::222222222222:role/platform/hub"]
    assert (hub["RoleName"], hub["Path"], hub["MaxSessionDuration"]) == ("hub", "/platform/", 14400)
    assert hub["Description"] == "The platform hub."
    audit = roles[AUDIT_ARNS[0]]
    assert (audit["RoleName"], audit["Path"]) == ("InventoryAudit", "/audit/")
    statement = audit["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Condition"] == {
        "StringEquals": {"sts:ExternalId": "${env:INVENTORY_AUDIT_EXTERNAL_ID}"}
    }
    vendor = roles["arn:aws:iam::222222222222:role/vendor-access"]["AssumeRolePolicyDocument"]
    assert vendor["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] == (
        "${env:VENDOR_EXTERNAL_ID}"
    )


def fill(document: dict[str, Any], value: str) -> dict[str, Any]:
    text = json.dumps(document)
    for name in ("INVENTORY_AUDIT_EXTERNAL_ID", "VENDOR_EXTERNAL_ID"):
        text = text.replace("${env:" + name + "}", value)
    result: dict[str, Any] = json.loads(text)
    return result


CI = Caller.parse("arn:aws:iam::111111111111:user/ci")
RUNNER = Caller.parse("arn:aws:sts::111111111111:assumed-role/gh-runner/build-1")
HUB = Caller.parse("arn:aws:sts::222222222222:assumed-role/hub/s")
VENDOR = Caller.parse("arn:aws:iam::999999999999:role/scanner")
STRANGER = Caller.parse("arn:aws:iam::555555555555:user/mallory")


@pytest.mark.parametrize(
    ("arn", "caller", "external_id", "actions"),
    [
        ("arn:aws:iam::222222222222:role/platform/hub", CI, None,
         {"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"}),
        ("arn:aws:iam::222222222222:role/platform/hub", RUNNER, None,
         {"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"}),
        ("arn:aws:iam::222222222222:role/platform/hub", STRANGER, None, set()),
        # Below the hub, sessions carry its transitive tag and source identity on.
        (AUDIT_ARNS[0], HUB, "x-external", {"sts:AssumeRole", "sts:TagSession",
                                            "sts:SetSourceIdentity"}),
        (AUDIT_ARNS[1], HUB, None, set()),  # no ExternalId: denied
        (AUDIT_ARNS[1], CI, "x-external", set()),
        ("arn:aws:iam::222222222222:role/vendor-access", VENDOR, "x-external", {"sts:AssumeRole"}),
        ("arn:aws:iam::222222222222:role/vendor-access", VENDOR, None, set()),
    ],
)  # fmt: skip
def test_the_trust_evaluator_allows_exactly_the_declared_callers(
    tmp_path: Path, arn: str, caller: Caller | None, external_id: str | None, actions: set[str]
) -> None:
    assert caller is not None
    document = fill(roles_by_arn(render(tmp_path, "iam-json"))[arn]["AssumeRolePolicyDocument"],
                    "x-external")  # fmt: skip
    context = assume_role_context(caller, external_id=external_id)
    allowed = {
        action
        for action in ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity")
        if evaluate(document, caller, action, context).allowed
    }
    assert allowed == actions


def test_role_selects_roles_sets_and_members(tmp_path: Path) -> None:
    out = render(tmp_path, "iam-json", "--role", "vendor", "--role", "audit@444444444444")
    assert sorted(roles_by_arn(out)) == [
        "arn:aws:iam::222222222222:role/vendor-access",
        AUDIT_ARNS[1],
    ]


def test_a_principal_without_an_arn_cannot_be_rendered(tmp_path: Path) -> None:
    chain = tmp_path / "chain.yaml"
    chain.write_text(CHAIN.replace(', arn: "arn:aws:iam::111111111111:user/ci"', ""))
    result = CliRunner().invoke(
        cli, ["render", str(chain), "--to", "iam-json", "-o", str(tmp_path / "x")], env=ENV
    )
    assert result.exit_code == 2
    assert "role hub trusts principal ci, which declares no 'arn'" in result.stderr
    unknown = CliRunner().invoke(
        cli, ["render", str(chain), "--to", "iam-json", "-o", "x", "--role", "nope"], env=ENV
    )
    assert unknown.exit_code == 2
    assert "unknown role or role set 'nope'" in unknown.stderr


def test_render_needs_no_secret(tmp_path: Path) -> None:
    out = render(tmp_path, "terraform", env={"VENDOR_EXTERNAL_ID": None})  # type: ignore[dict-item]
    assert 'variable "vendor_external_id"' in (out / "variables.tf").read_text()


def test_a_wildcard_trust_is_rendered_as_iam_writes_it(tmp_path: Path) -> None:
    chain = tmp_path / "chain.yaml"
    chain.write_text(CHAIN.replace("trusts: [ci, runner]", 'trusts: [ci, "*"]'))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", str(chain), "--to", "iam-json", "-o", str(out)],
                                env=ENV)  # fmt: skip
    assert result.exit_code == 0, result.output
    hub = roles_by_arn(out)["arn:aws:iam::222222222222:role/platform/hub"]
    assert hub["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == "*"
    jsonschema.validate(hub["AssumeRolePolicyDocument"], IAM_TRUST_POLICY)


# --- CloudFormation ------------------------------------------------------------------------


def test_cloudformation_passes_cfn_lint(tmp_path: Path) -> None:
    out = render(tmp_path, "cloudformation")
    templates = sorted(p for p in out.iterdir() if p.name != "stack-sets.json")
    assert [p.name for p in templates] == ["account-222222222222.json", "role-set-audit.json"]
    lint = subprocess.run(
        [CFN_LINT, *map(str, templates)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    account = json.loads(templates[0].read_text())
    assert account["Parameters"]["VendorExternalId"]["NoEcho"] is True
    assert set(account["Resources"]) == {"Hub", "Vendor"}
    role_set = json.loads(templates[1].read_text())
    (resource,) = role_set["Resources"].values()
    condition = resource["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
    assert condition == {"StringEquals": {"sts:ExternalId": {"Ref": "InventoryAuditExternalId"}}}
    assert "333333333333" not in templates[1].read_text()  # StackSets-ready: no account in it
    (stack_set,) = json.loads((out / "stack-sets.json").read_text())["StackSets"]
    assert stack_set["Accounts"] == ["333333333333", "444444444444"]
    assert stack_set["TemplateFile"] == "role-set-audit.json"


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    """The validator is real: a template with a wrong MaxSessionDuration type fails."""
    out = render(tmp_path, "cloudformation")
    broken = json.loads((out / "role-set-audit.json").read_text())
    (resource,) = broken["Resources"].values()
    resource["Properties"]["MaxSessionDuration"] = 99
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    lint = subprocess.run([CFN_LINT, str(path)], capture_output=True, text=True, check=False)
    assert lint.returncode != 0


# --- Terraform -----------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """python-hcl2's tree without its markers: quoted strings unquoted, no __is_block__."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value)
    return value


def parse_tf(out: Path) -> dict[str, dict[str, Any]]:
    return {
        p.relative_to(out).as_posix(): plain(hcl2.loads(p.read_text(encoding="utf-8")))
        for p in out.rglob("*.tf")
    }


def test_terraform_parses_and_has_a_provider_and_module_per_account(tmp_path: Path) -> None:
    out = render(tmp_path, "terraform")
    files = parse_tf(out)
    assert sorted(files) == [
        "main.tf", "modules/account-roles/main.tf", "providers.tf", "trust_policies.tf",
        "variables.tf", "versions.tf",
    ]  # fmt: skip
    accounts = ["222222222222", "333333333333", "444444444444"]
    providers = [p["aws"] for p in files["providers.tf"]["provider"]]
    assert [p["alias"] for p in providers] == [f"account_{a}" for a in accounts]
    assert [p["allowed_account_ids"] for p in providers] == [[a] for a in accounts]
    roles = [p["assume_role"][0]["role_arn"] for p in providers]
    assert roles[0] == "arn:aws:iam::222222222222:role/${var.deploy_role_name}"
    modules = {name: body for m in files["main.tf"]["module"] for name, body in m.items()}
    assert sorted(modules) == [f"account_{a}" for a in accounts]
    hub_account = modules["account_222222222222"]
    assert hub_account["source"] == "./modules/account-roles"
    assert sorted(hub_account["roles"]) == ["hub", "vendor-access"]
    assert hub_account["roles"]["hub"]["trust_policy"] == "hub"
    assert hub_account["roles"]["hub"]["max_session_duration"] == 14400
    audit_member = modules["account_333333333333"]["roles"]["InventoryAudit"]
    assert audit_member["path"] == "/audit/"
    assert audit_member["trust_policy"] == "audit"
    variables = {n: b for v in files["variables.tf"]["variable"] for n, b in v.items()}
    assert variables["vendor_external_id"]["sensitive"] is True
    assert variables["inventory_audit_external_id"]["sensitive"] is True
    assert "default" not in variables["vendor_external_id"]
    (local,) = files["trust_policies.tf"]["locals"]
    assert sorted(local["trust_policies"]) == ["audit", "hub", "vendor"]  # once per role set
    assert "var.inventory_audit_external_id" in local["trust_policies"]["audit"]
    module = files["modules/account-roles/main.tf"]
    (resource,) = module["resource"]
    role = resource["aws_iam_role"]["this"]
    assert role["for_each"] == "${var.roles}"  # over the account's roles
    assert role["assume_role_policy"] == "${var.trust_policies[each.value.trust_policy]}"
    module_vars = {n: b for v in module["variable"] for n, b in v.items()}
    assert module_vars["trust_policies"]["sensitive"] is True


def test_terraform_text_from_the_file_is_never_a_template(tmp_path: Path) -> None:
    chain = tmp_path / "chain.yaml"
    chain.write_text(CHAIN.replace("The platform hub.", "Hub $${jsonencode(1)} %{ if x }"))
    out = tmp_path / "tf"
    result = CliRunner().invoke(cli, ["render", str(chain), "--to", "terraform", "-o", str(out)],
                                env=ENV)  # fmt: skip
    assert result.exit_code == 0, result.output
    text = (out / "main.tf").read_text()
    assert '"Hub $${jsonencode(1)} %%{ if x }"' in text
    modules = {n: b for m in parse_tf(out)["main.tf"]["module"] for n, b in m.items()}
    hub = modules["account_222222222222"]["roles"]["hub"]
    assert hub["description"] == "Hub $${jsonencode(1)} %%{ if x }"  # escaped: HCL reads it back
