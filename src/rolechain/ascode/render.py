"""Render the roles a chain file declares as infrastructure code: Terraform, CloudFormation,
or IAM's own JSON.

Each renderer returns the files to write (relative path -> text) and never an ExternalId:
the ``sts:ExternalId`` condition reads a sensitive Terraform variable, a CloudFormation
parameter with ``NoEcho``, or a ``${env:NAME}`` placeholder in the JSON (which ``rolechain
sandbox --provision`` fills in from the environment). A role set's trust policy is written
once and deployed to each of its accounts:

* Terraform: one ``aws`` provider alias per account (assuming ``var.deploy_role_name`` in
  it), one module call per account whose ``aws_iam_role`` resource takes ``for_each`` over
  that account's roles, and every trust policy once, in ``local.trust_policies``.
  Terraform fixes a resource's provider before ``for_each`` expands, so accounts cannot be
  a ``for_each`` key themselves: the per-account module calls are written out instead.
* CloudFormation: a template per account for the roles, and a StackSets-ready template
  per role set (no account in it) with ``stack-sets.json`` saying where to deploy it.
* IAM JSON: ``roles.json`` in the shape ``aws iam list-roles`` prints (with ``Arn``), and
  each trust policy once under ``trust-policies/``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rolechain.ascode.trust import RoleSpec, role_specs, trust_document
from rolechain.errors import UsageError
from rolechain.model.chain import Chain
from rolechain.model.schema import EXTERNAL_ID_PATTERN

Format = Literal["terraform", "cloudformation", "iam-json"]
FORMATS: tuple[Format, ...] = ("terraform", "cloudformation", "iam-json")
DEFAULT_DEPLOY_ROLE = "OrganizationAccountAccessRole"


@dataclass
class Rendered:
    """The files to write, and the ExternalId variables they need at apply time."""

    files: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)  # env NAME -> how to pass it
    roles: int = 0  # IAM roles (role-set members counted one by one)
    policies: int = 0  # distinct trust policies written


def render(chain: Chain, fmt: Format, only: Sequence[str] = (), source: str = "") -> Rendered:
    """Render ``chain``'s roles (or those ``only`` names) as ``fmt``."""
    specs = role_specs(chain, only)
    if not specs:
        raise UsageError("the chain file declares no role or role set to render")
    if fmt == "terraform":
        return _terraform(chain, specs, source)
    if fmt == "cloudformation":
        return _cloudformation(specs, source)
    if fmt == "iam-json":
        return _iam_json(specs)
    raise UsageError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")


def _members(spec: RoleSpec) -> tuple[str, ...]:
    return spec.accounts or ()


def _count(specs: Sequence[RoleSpec]) -> int:
    return sum(len(_members(s)) for s in specs)


# --- IAM JSON -------------------------------------------------------------------------------


def placeholder(name: str) -> str:
    return f"${{env:{name}}}"


def _iam_json(specs: Sequence[RoleSpec]) -> Rendered:
    out = Rendered()
    roles: list[dict[str, Any]] = []
    for spec in specs:
        stand_in = placeholder(spec.external_id) if spec.external_id else None
        document = trust_document(spec, stand_in)
        out.files[f"trust-policies/{_file_name(spec)}.json"] = _json(document)
        out.policies += 1
        if spec.external_id:
            out.variables[spec.external_id] = f"export {spec.external_id}=... (sandbox --provision)"
        for account in _members(spec):
            item: dict[str, Any] = {
                "Arn": spec.arn(account),
                "RoleName": spec.role_name,
                "Path": spec.path,
                "MaxSessionDuration": spec.max_session_duration,
                "AssumeRolePolicyDocument": document,
            }
            if spec.description:
                item["Description"] = spec.description
            roles.append(item)
    roles.sort(key=lambda r: r["Arn"])
    out.roles = len(roles)
    out.files["roles.json"] = _json({"Roles": roles})
    return out


def _file_name(spec: RoleSpec) -> str:
    return ("role-" if spec.kind == "role" else "role-set-") + spec.name


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"


# --- CloudFormation -------------------------------------------------------------------------


def _camel(text: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text))
    return "".join(w[:1].upper() + w[1:].lower() for w in words if w) or "Role"


def _parameter(name: str) -> dict[str, Any]:
    return {
        "Type": "String",
        "NoEcho": True,
        "MinLength": 2,
        "MaxLength": 1224,
        "AllowedPattern": EXTERNAL_ID_PATTERN,
        "Description": f"The ExternalId callers must pass (rolechain reads it from ${name})",
    }


def _role_resource(spec: RoleSpec, parameter: str | None) -> dict[str, Any]:
    document = trust_document(spec, {"Ref": parameter} if parameter else None)
    properties: dict[str, Any] = {
        "RoleName": spec.role_name,
        "Path": spec.path,
        "AssumeRolePolicyDocument": document,
        "MaxSessionDuration": spec.max_session_duration,
    }
    if spec.description:
        properties["Description"] = spec.description[:1000]
    return {"Type": "AWS::IAM::Role", "Properties": properties}


def _template(description: str, specs: Sequence[RoleSpec]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for spec in specs:
        parameter = None
        if spec.external_id:
            parameter = _camel(spec.external_id)
            parameters[parameter] = _parameter(spec.external_id)
        logical = _camel(spec.name)
        while logical in resources:
            logical += "X"
        resources[logical] = _role_resource(spec, parameter)
        outputs[f"{logical}Arn"] = {
            "Description": f"the ARN of {spec.kind} {spec.name}",
            "Value": {"Fn::GetAtt": [logical, "Arn"]},
        }
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": description[:1024],
    }
    if parameters:
        template["Parameters"] = parameters
    template["Resources"] = resources
    template["Outputs"] = outputs
    return template


def _cloudformation(specs: Sequence[RoleSpec], source: str) -> Rendered:
    out = Rendered()
    origin = f" from {source}" if source else ""
    by_account: dict[str, list[RoleSpec]] = defaultdict(list)
    stack_sets: list[dict[str, Any]] = []
    for spec in specs:
        if spec.external_id:
            out.variables[spec.external_id] = f"parameter {_camel(spec.external_id)} (NoEcho)"
        out.policies += 1
        if spec.kind == "role":
            by_account[_members(spec)[0]].append(spec)
            out.roles += 1
            continue
        name = f"role-set-{spec.name}.json"
        out.files[name] = _json(
            _template(
                f"Role set {spec.name} ({spec.path}{spec.role_name}), rendered by rolechain"
                f"{origin}: a StackSets template, deployed once per account",
                [spec],
            )
        )
        entry: dict[str, Any] = {
            "StackSetName": f"rolechain-{spec.name}",
            "TemplateFile": name,
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
            "Parameters": [_camel(spec.external_id)] if spec.external_id else [],
        }
        if spec.accounts is not None:
            entry["Accounts"] = list(spec.accounts)
            out.roles += len(spec.accounts)
        else:
            entry["DeploymentTargets"] = "the organization's accounts (choose OUs)"
        stack_sets.append(entry)
    for account, listed in sorted(by_account.items()):
        out.files[f"account-{account}.json"] = _json(
            _template(f"IAM roles of account {account}, rendered by rolechain{origin}", listed)
        )
    if stack_sets:
        out.files["stack-sets.json"] = _json({"StackSets": stack_sets})
    return out


# --- Terraform ------------------------------------------------------------------------------


class Expr(str):
    """An HCL expression written as is (``var.x``), not as a quoted string."""

    __slots__ = ()


def hcl_string(text: str) -> str:
    """A quoted HCL string: ``${`` and ``%{`` are escaped, so text is never a template."""
    out = json.dumps(text, ensure_ascii=True)  # escapes quotes, backslashes, controls
    return out.replace("${", "$${").replace("%{", "%%{")


def hcl(value: Any, indent: int = 0) -> str:
    """``value`` (dicts, lists, strings, numbers, :class:`Expr`) as an HCL expression."""
    pad = "  " * (indent + 1)
    if isinstance(value, Expr):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return hcl_string(value)
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        rows = [f"{pad}{hcl_string(str(k))} = {hcl(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + "\n".join(rows) + "\n" + "  " * indent + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        rows = [f"{pad}{hcl(v, indent + 1)}," for v in value]
        return "[\n" + "\n".join(rows) + "\n" + "  " * indent + "]"
    raise TypeError(f"cannot write {type(value).__name__} as HCL")


def tf_variable(name: str) -> str:
    """The Terraform variable for the environment variable ``name``."""
    return name.lower()


_MODULE = """\
# Written by `rolechain render --to terraform`: the IAM roles of one account.
terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "roles" {
  description = "The account's roles by name: path, trust policy name, MaxSessionDuration."
  type = map(object({
    path                 = string
    trust_policy         = string
    max_session_duration = number
    description          = optional(string)
  }))
}

variable "trust_policies" {
  description = "Trust policy documents (JSON) by name; they hold ExternalIds."
  type        = map(string)
  sensitive   = true
}

resource "aws_iam_role" "this" {
  for_each             = var.roles
  name                 = each.key
  path                 = each.value.path
  assume_role_policy   = var.trust_policies[each.value.trust_policy]
  max_session_duration = each.value.max_session_duration
  description          = each.value.description
}

output "arns" {
  description = "The roles' ARNs by name."
  value       = { for name, role in aws_iam_role.this : name => role.arn }
}
"""


def _terraform(chain: Chain, specs: Sequence[RoleSpec], source: str) -> Rendered:
    out = Rendered()
    organization = [s.name for s in specs if s.accounts is None]
    if organization:
        raise UsageError(
            f"role set {', '.join(organization)} takes its accounts from AWS Organizations "
            "at run time; Terraform needs a provider per account",
            hint="list the accounts (or render that set with --to cloudformation: StackSets "
            "deploy to organizational units)",
        )
    header = "# Written by `rolechain render --to terraform`" + (
        f" from {source}" if source else ""
    )
    header += ": edit the chain file, not this.\n"

    variables = [
        header,
        'variable "deploy_role_name" {\n'
        '  description = "The role Terraform assumes in each account to manage IAM '
        '(name, with its path)."\n'
        "  type        = string\n"
        f"  default     = {hcl_string(DEFAULT_DEPLOY_ROLE)}\n"
        "}\n",
    ]
    policies: dict[str, Any] = {}
    by_account: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    partitions: dict[str, str] = {}
    for spec in specs:
        stand_in = None
        if spec.external_id:
            variable = tf_variable(spec.external_id)
            stand_in = Expr(f"var.{variable}")
            if spec.external_id not in out.variables:
                variables.append(
                    f'variable "{variable}" {{\n'
                    f"  description = {hcl_string(f'ExternalId of {spec.kind} {spec.name}')}\n"
                    "  type        = string\n"
                    "  sensitive   = true\n"
                    "}\n"
                )
            out.variables[spec.external_id] = f"TF_VAR_{variable}"
        key = spec.name
        policies[key] = Expr("jsonencode(" + hcl(trust_document(spec, stand_in), 2) + ")")
        out.policies += 1
        for account in _members(spec):
            by_account[account][spec.role_name] = {
                "path": spec.path,
                "trust_policy": key,
                "max_session_duration": spec.max_session_duration,
                "description": spec.description,
            }
            partitions[account] = spec.partition
            out.roles += 1
    region = chain.model.settings.region
    providers = [header]
    modules = [header]
    for account in sorted(by_account):
        alias = f"account_{account}"
        role_arn = f"arn:{partitions[account]}:iam::{account}:role/${{var.deploy_role_name}}"
        providers.append(
            f'provider "aws" {{\n  alias  = "{alias}"\n  region = {hcl_string(region)}\n'
            f'  assume_role {{\n    role_arn = "{role_arn}"\n  }}\n'
            f'  allowed_account_ids = ["{account}"]\n}}\n'
        )
        roles = {
            name: {k: v for k, v in item.items() if v is not None}
            for name, item in sorted(by_account[account].items())
        }
        modules.append(
            f'module "{alias}" {{\n  source    = "./modules/account-roles"\n'
            f"  providers = {{ aws = aws.{alias} }}\n"
            f"  roles     = {hcl(roles, 1)}\n"
            "  trust_policies = local.trust_policies\n}\n"
        )
    out.files["versions.tf"] = (
        header + 'terraform {\n  required_version = ">= 1.3"\n  required_providers {\n'
        '    aws = {\n      source  = "hashicorp/aws"\n      version = ">= 5.0"\n    }\n'
        "  }\n}\n"
    )
    out.files["variables.tf"] = "\n".join(variables)
    out.files["providers.tf"] = "\n".join(providers)
    out.files["trust_policies.tf"] = (
        header + "locals {\n  trust_policies = " + hcl(policies, 1) + "\n}\n"
    )
    out.files["main.tf"] = "\n".join(modules)
    out.files["modules/account-roles/main.tf"] = _MODULE
    return out
