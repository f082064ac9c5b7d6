"""The trust-policy evaluator, case by case against the IAM policy reference.

Each row names the page (and section) of the IAM user guide that decides it. The rows
marked ``# regression`` failed before issue 18: the evaluator disagreed with AWS there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from rolechain.policy import Caller, assume_role_context, evaluate, parse_policy
from rolechain.policy.trust import RequestContext, glob_match

_GUIDE = "https://docs.aws.amazon.com/IAM/latest/UserGuide/"
PRINCIPAL = _GUIDE + "reference_policies_elements_principal.html"
NOT_PRINCIPAL = _GUIDE + "reference_policies_elements_notprincipal.html"
ACTION = _GUIDE + "reference_policies_elements_action.html"
CONDITION = _GUIDE + "reference_policies_elements_condition.html"
OPERATORS = _GUIDE + "reference_policies_elements_condition_operators.html"
MULTI = _GUIDE + "reference_policies_condition-single-vs-multi-valued-context-keys.html"
LOGIC = _GUIDE + "reference_policies_condition-logic-multiple-context-keys-or-values.html"
VARIABLES = _GUIDE + "reference_policies_variables.html"
EVALUATION = _GUIDE + "reference_policies_evaluation-logic.html"
GLOBAL_KEYS = _GUIDE + "reference_policies_condition-keys.html"
STS_KEYS = _GUIDE + "reference_policies_iam-condition-keys.html"

USER = Caller("user", "111111111111", "aws", "ops", "/")
CN_USER = Caller("user", "111111111111", "aws-cn", "ops", "/")
ROOT = Caller("root", "111111111111")
SESSION = Caller("role", "222222222222", "aws", "Hub", None, "s1")
ASSUME = "sts:AssumeRole"
USER_ARN = "arn:aws:iam::111111111111:user/ops"
GITHUB = "token.actions.githubusercontent.com"


@dataclass(frozen=True)
class Case:
    name: str
    reference: str
    statements: tuple[dict[str, Any], ...]
    expected: str
    caller: Caller = USER
    context: dict[str, Any] | None = None
    action: str = ASSUME
    version: str | None = "2012-10-17"


def allow(
    principal: Any = None, condition: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": ASSUME, **extra}
    statement["Principal"] = principal if principal is not None else {"AWS": USER_ARN}
    if condition is not None:
        statement["Condition"] = condition
    return statement


def deny(principal: Any = "*", condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement = allow(principal, condition)
    statement["Effect"] = "Deny"
    return statement


def when(condition: dict[str, Any], context: dict[str, Any], expected: str, name: str,
         reference: str) -> Case:  # fmt: skip
    return Case(name, reference, (allow(condition=condition),), expected, context=context)


S = OPERATORS + "#Conditions_String"
N = OPERATORS + "#Conditions_Numeric"
D = OPERATORS + "#Conditions_Date"
B = OPERATORS + "#Conditions_Boolean"
BIN = OPERATORS + "#Conditions_BinaryEquals"
IP = OPERATORS + "#Conditions_IPAddress"
ARN = OPERATORS + "#Conditions_ARN"
IFX = OPERATORS + "#Conditions_IfExists"
NULL = OPERATORS + "#Conditions_Null"
EID = "sts:ExternalId"
TAGS = "aws:TagKeys"

# fmt: off
CASES: list[Case] = [
    # -- principals ---------------------------------------------------------------------
    Case("account id", PRINCIPAL + "#principal-accounts",
         (allow({"AWS": "111111111111"}),), "allow"),
    Case("account id in the caller's partition (regression)", PRINCIPAL + "#principal-accounts",
         (allow({"AWS": "111111111111"}),), "allow", caller=CN_USER),
    Case("account root ARN", PRINCIPAL + "#principal-accounts",
         (allow({"AWS": "arn:aws:iam::111111111111:root"}),), "allow"),
    Case("root ARN of another partition", PRINCIPAL + "#principal-accounts",
         (allow({"AWS": "arn:aws-cn:iam::111111111111:root"}),), "deny"),
    Case("another account", PRINCIPAL + "#principal-accounts",
         (allow({"AWS": "999999999999"}),), "deny"),
    Case("account root user itself", PRINCIPAL + "#principal-accounts",
         (allow({"AWS": "111111111111"}),), "allow", caller=ROOT),
    Case("role ARN covers its sessions", PRINCIPAL + "#principal-roles",
         (allow({"AWS": "arn:aws:iam::222222222222:role/Hub"}),), "allow", caller=SESSION),
    Case("role ARN is not a user of that name", PRINCIPAL + "#principal-roles",
         (allow({"AWS": "arn:aws:iam::111111111111:role/ops"}),), "deny"),
    Case("role session ARN", PRINCIPAL + "#principal-role-session",
         (allow({"AWS": "arn:aws:sts::222222222222:assumed-role/Hub/s1"}),), "allow",
         caller=SESSION),
    Case("another role session", PRINCIPAL + "#principal-role-session",
         (allow({"AWS": "arn:aws:sts::222222222222:assumed-role/Hub/s2"}),), "deny",
         caller=SESSION),
    Case("IAM user ARN", PRINCIPAL + "#principal-users", (allow({"AWS": USER_ARN}),), "allow"),
    Case("another IAM user", PRINCIPAL + "#principal-users",
         (allow({"AWS": "arn:aws:iam::111111111111:user/dev"}),), "deny"),
    Case("everyone", PRINCIPAL + "#principal-anonymous", (allow("*"),), "allow"),
    Case("every AWS principal", PRINCIPAL + "#principal-anonymous",
         (allow({"AWS": "*"}),), "allow", caller=SESSION),
    Case("service principal is not an IAM caller", PRINCIPAL + "#principal-services",
         (allow({"Service": "ec2.amazonaws.com"}),), "deny"),
    Case("OIDC provider is not an AssumeRole caller",
         PRINCIPAL + "#principal-federated-web-identity",
         (allow({"Federated": "arn:aws:iam::111111111111:oidc-provider/" + GITHUB}),), "deny"),
    Case("SAML provider is not an AssumeRole caller", PRINCIPAL + "#principal-saml",
         (allow({"Federated": "arn:aws:iam::111111111111:saml-provider/idp"}),), "deny"),
    Case("wildcard in a principal ARN: the document is refused (regression)",
         PRINCIPAL + "#principal-roles",
         (allow({"AWS": ["arn:aws:iam::222222222222:role/*", USER_ARN]}),), "deny"),
    Case("NotPrincipal grants nothing in a trust policy (regression)", NOT_PRINCIPAL,
         (allow(None) | {"NotPrincipal": {"AWS": "arn:aws:iam::999999999999:root"}},), "deny"),
    Case("deleted principal's unique id", PRINCIPAL + "#principal-roles",
         (allow({"AWS": "AIDAJQABLZS4A3QDU576Q"}),), "deny"),
    # -- actions ------------------------------------------------------------------------
    Case("action wildcard", ACTION, (allow(Action="sts:Assume*"),), "allow"),
    Case("action names are case-insensitive", ACTION, (allow(Action="STS:ASSUMEROLE"),),
         "allow"),
    Case("another action", ACTION, (allow(Action="sts:TagSession"),), "deny"),
    # -- string ---------------------------------------------------------------------------
    when({"StringEquals": {EID: "abc"}}, {EID: "abc"}, "allow", "StringEquals", S),
    when({"StringEquals": {EID: "abc"}}, {EID: "ABC"}, "deny", "values are case-sensitive", S),
    when({"StringEquals": {"STS:EXTERNALID": "abc"}}, {EID: "abc"}, "allow",
         "keys are case-insensitive", CONDITION),
    when({"StringEqualsIgnoreCase": {EID: "abc"}}, {EID: "ABC"}, "allow",
         "StringEqualsIgnoreCase", S),
    when({"StringNotEquals": {EID: "abc"}}, {EID: "abd"}, "allow", "StringNotEquals", S),
    when({"StringNotEquals": {EID: ["a", "b"]}}, {EID: "b"}, "deny",
         "StringNotEquals: none of the values", LOGIC),
    when({"StringLike": {EID: "a*c"}}, {EID: "abbbc"}, "allow", "StringLike *", S),
    when({"StringLike": {EID: "a?c"}}, {EID: "abbc"}, "deny", "StringLike ? is one character",
         S),
    when({"StringNotLike": {EID: "a*"}}, {EID: "abc"}, "deny", "StringNotLike", S),
    when({"StringEquals": {EID: ["x", "abc"]}}, {EID: "abc"}, "allow",
         "a key's values are ORed", LOGIC),
    when({"StringEquals": {EID: "abc", "sts:RoleSessionName": "s"}},
         {EID: "abc", "sts:RoleSessionName": "t"}, "deny", "keys are ANDed", LOGIC),
    when({"StringEquals": {EID: "abc"}, "StringLike": {"sts:RoleSessionName": "x*"}},
         {EID: "abc", "sts:RoleSessionName": "y"}, "deny", "operators are ANDed", LOGIC),
    when({"StringEquals": {EID: "abc"}}, {EID: None}, "deny",
         "positive operator, key absent", CONDITION),
    # -- numeric, date, bool, binary, ip, arn --------------------------------------------
    when({"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},
         {"aws:MultiFactorAuthAge": "60"}, "allow", "NumericLessThan", N),
    when({"NumericGreaterThanEquals": {"aws:MultiFactorAuthAge": "3600"}},
         {"aws:MultiFactorAuthAge": "60"}, "deny", "NumericGreaterThanEquals", N),
    when({"NumericEquals": {"aws:MultiFactorAuthAge": "60"}},
         {"aws:MultiFactorAuthAge": "sixty"}, "deny", "NumericEquals, not a number", N),
    when({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
         {"aws:CurrentTime": "2026-12-06T12:00:00Z"}, "allow", "DateGreaterThan ISO 8601", D),
    when({"DateLessThan": {"aws:EpochTime": "1577836800"}},
         {"aws:EpochTime": "1780000000"}, "deny", "DateLessThan epoch seconds", D),
    when({"Bool": {"aws:MultiFactorAuthPresent": "true"}},
         {"aws:MultiFactorAuthPresent": "true"}, "allow", "Bool true", B),
    when({"Bool": {"aws:MultiFactorAuthPresent": "true"}},
         {"aws:MultiFactorAuthPresent": None}, "deny", "Bool, key absent", B),
    when({"BinaryEquals": {"aws:RequestTag/blob": "QmluYXJ5"}},
         {"aws:RequestTag/blob": "QmluYXJ5"}, "allow", "BinaryEquals", BIN),
    when({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "203.0.113.9"},
         "allow", "IpAddress CIDR", IP),
    when({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
         {"aws:SourceIp": "203.0.113.9"}, "deny", "NotIpAddress", IP),
    when({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, {"aws:SourceIp": "2001:db8::1"},
         "allow", "IpAddress IPv6", IP),
    when({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}},
         {"aws:PrincipalArn": USER_ARN}, "allow", "ArnLike", ARN),
    when({"ArnEquals": {"aws:PrincipalArn": USER_ARN}}, {"aws:PrincipalArn": USER_ARN},
         "allow", "ArnEquals", ARN),
    when({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:USER/*"}},
         {"aws:PrincipalArn": USER_ARN}, "deny", "ARN matching is case-sensitive", ARN),
    # -- negated operators with the key absent --------------------------------------------
    when({"StringNotLike": {EID: "a*"}}, {EID: None}, "allow", "StringNotLike, absent", S),
    when({"ArnNotEquals": {"aws:PrincipalArn": USER_ARN}}, {"aws:PrincipalArn": None},
         "allow", "ArnNotEquals, absent", ARN),
    when({"NumericNotEquals": {"aws:MultiFactorAuthAge": "1"}},
         {"aws:MultiFactorAuthAge": None}, "allow", "NumericNotEquals, absent", N),
    when({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": None}, "allow",
         "NotIpAddress, absent", IP),
    # -- IfExists ---------------------------------------------------------------------------
    when({"StringEqualsIfExists": {EID: "abc"}}, {EID: None}, "allow", "IfExists, absent",
         IFX),
    when({"StringEqualsIfExists": {EID: "abc"}}, {EID: "x"}, "deny", "IfExists, present",
         IFX),
    when({"NumericLessThanIfExists": {"aws:MultiFactorAuthAge": "10"}},
         {"aws:MultiFactorAuthAge": None}, "allow", "NumericLessThanIfExists, absent", IFX),
    # -- Null -------------------------------------------------------------------------------
    when({"Null": {EID: "true"}}, {EID: None}, "allow", "Null true, absent", NULL),
    when({"Null": {EID: "true"}}, {EID: "abc"}, "deny", "Null true, present", NULL),
    when({"Null": {EID: "false"}}, {EID: None}, "deny", "Null false, absent", NULL),
    when({"Null": {EID: ["false", "true"]}}, {EID: None}, "allow",
         "Null with two values: ORed (regression)", LOGIC),
    # -- ForAnyValue / ForAllValues ------------------------------------------------------------
    when({"ForAnyValue:StringEquals": {TAGS: ["team"]}}, {TAGS: ("team", "x")}, "allow",
         "ForAnyValue, one matches", MULTI),
    when({"ForAnyValue:StringEquals": {TAGS: ["team"]}}, {TAGS: ("x",)}, "deny",
         "ForAnyValue, none matches", MULTI),
    when({"ForAnyValue:StringEquals": {TAGS: ["team"]}}, {TAGS: ()}, "deny",
         "ForAnyValue, empty key", MULTI),
    when({"ForAnyValue:StringEquals": {TAGS: ["team"]}}, {TAGS: None}, "deny",
         "ForAnyValue, absent key", MULTI),
    when({"ForAnyValue:StringNotEquals": {TAGS: ["team"]}}, {TAGS: None}, "deny",
         "ForAnyValue negated, absent key (regression)", MULTI),
    when({"ForAnyValue:StringNotEquals": {TAGS: ["team"]}}, {TAGS: ()}, "deny",
         "ForAnyValue negated, empty key (regression)", MULTI),
    when({"ForAnyValue:StringEqualsIfExists": {TAGS: ["team"]}}, {TAGS: None}, "deny",
         "ForAnyValue IfExists, absent key (regression)", MULTI),
    when({"ForAnyValue:StringNotEquals": {TAGS: ["team"]}}, {TAGS: ("team", "cost")},
         "allow", "ForAnyValue negated, one other value", MULTI),
    when({"ForAllValues:StringLike": {TAGS: ["team", "c*"]}}, {TAGS: ("team", "cost")},
         "allow", "ForAllValues, all match", MULTI),
    when({"ForAllValues:StringLike": {TAGS: ["team", "c*"]}}, {TAGS: ("team", "x")},
         "deny", "ForAllValues, one does not", MULTI),
    when({"ForAllValues:StringEquals": {TAGS: ["team"]}}, {TAGS: ()}, "allow",
         "ForAllValues, empty key", MULTI),
    when({"ForAllValues:StringEquals": {TAGS: ["team"]}}, {TAGS: None}, "allow",
         "ForAllValues, absent key", MULTI),
    # -- policy variables ----------------------------------------------------------------
    when({"StringEquals": {"sts:RoleSessionName": "${aws:username}"}},
         {"sts:RoleSessionName": "ops", "aws:username": "ops"}, "allow", "variable", VARIABLES),
    when({"StringEquals": {"sts:RoleSessionName": "${aws:username}"}},
         {"sts:RoleSessionName": "dev", "aws:username": "ops"}, "deny", "variable, other value",
         VARIABLES),
    when({"StringLike": {"sts:RoleSessionName": "${aws:username}-*"}},
         {"sts:RoleSessionName": "ops-1", "aws:username": "ops"}, "allow",
         "variable in a pattern", VARIABLES),
    when({"StringEquals": {"sts:RoleSessionName": "${aws:username, 'ops'}"}},
         {"sts:RoleSessionName": "ops", "aws:username": None}, "allow",
         "variable default value", VARIABLES + "#policy-vars-default-values"),
    when({"StringEquals": {"sts:RoleSessionName": "${aws:username}"}},
         {"sts:RoleSessionName": "ops", "aws:username": None}, "deny",
         "variable of an absent key, no default", VARIABLES + "#policy-vars-no-value"),
    when({"StringLike": {"sts:RoleSessionName": "a${*}"}}, {"sts:RoleSessionName": "abc"},
         "deny", "${*} is a literal asterisk", VARIABLES + "#policy-vars-specialchars"),
    when({"StringLike": {"sts:RoleSessionName": "a${*}"}}, {"sts:RoleSessionName": "a*"},
         "allow", "${*} matches an asterisk", VARIABLES + "#policy-vars-specialchars"),
    Case("no Version: ${...} is literal text", VARIABLES + "#policy-vars-infotouse",
         (allow(condition={"StringEquals": {"sts:RoleSessionName": "${aws:username}"}}),),
         "deny", context={"sts:RoleSessionName": "ops", "aws:username": "ops"}, version=None),
    # -- Deny precedence ------------------------------------------------------------------
    Case("explicit Deny wins", EVALUATION, (allow(), deny()), "deny"),
    Case("Deny whose condition fails does not apply", EVALUATION,
         (allow(), deny(condition={"StringEquals": {EID: "x"}})), "allow", context={EID: "y"}),
    Case("Deny of another principal", EVALUATION,
         (allow(), deny({"AWS": "arn:aws:iam::999999999999:root"})), "allow"),
    Case("no statement applies: implicit deny", EVALUATION,
         (allow({"AWS": "999999999999"}),), "deny"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_trust_policy_case(case: Case) -> None:
    assert case.reference.startswith("https://docs.aws.amazon.com/IAM/latest/UserGuide/")
    document: dict[str, Any] = {"Statement": list(case.statements)}
    if case.version:
        document["Version"] = case.version
    decision = evaluate(document, case.caller, case.action, case.context or {})
    assert decision.outcome == case.expected, case.reference


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


# -- the source identity --------------------------------------------------------------


def _source_identity(condition: dict[str, Any], **request: Any) -> str:
    document = {"Version": "2012-10-17", "Statement": [allow(condition=condition)]}
    return evaluate(document, USER, ASSUME, assume_role_context(USER, **request)).outcome


def test_aws_source_identity_is_only_the_callers_own() -> None:
    """GLOBAL_KEYS#condition-keys-sourceidentity, STS_KEYS#ck_sourceidentity."""
    eq = {"StringEquals": {"aws:SourceIdentity": "alice"}}
    # a first hop that sets alice: aws:SourceIdentity is not in the context (regression)
    assert _source_identity(eq, source_identity="alice") == "deny"
    assert _source_identity({"Null": {"aws:SourceIdentity": "true"}},
                            source_identity="alice") == "allow"  # fmt: skip
    # the value being set is sts:SourceIdentity
    assert _source_identity({"StringEquals": {"sts:SourceIdentity": "alice"}},
                            source_identity="alice") == "allow"  # fmt: skip
    # a session that already carries alice
    assert _source_identity(eq, inherited_source_identity="alice") == "allow"


# -- linear-time globs ----------------------------------------------------------------


def test_pathological_globs_answer() -> None:
    """``*a`` x 30 + ``*b`` against 64 a's: a backtracking regex needs about 8^30 steps
    (the 8-star version took 83 s); the matcher answers at once."""
    text = "a" * 64
    pattern = "*a" * 30 + "*b"
    started = time.process_time()
    assert not glob_match(text, pattern)
    assert glob_match(text + "b", pattern)
    document = {"Version": "2012-10-17", "Statement": [
        allow("*", condition={"StringLike": {"sts:RoleSessionName": pattern}}),
        allow("*", condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::" + pattern}}),
    ]}  # fmt: skip
    context = {"sts:RoleSessionName": text, "aws:PrincipalArn": "arn:aws:iam::" + text}
    assert evaluate(document, USER, ASSUME, context).outcome == "deny"
    long_text = "a" * 5000
    assert not glob_match(long_text, "*a" * 200 + "*b")
    assert time.process_time() - started < 30  # generous: quadratic at worst, not exponential


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("", "", True), ("", "*", True), ("a", "", False), ("abc", "a*c", True),
        ("ac", "a*c", True), ("a", "a*a", False), ("aa", "a*a", True), ("abc", "???", True),
        ("ab", "???", False), ("xaybzc", "*a*b*c", True), ("xaybz", "*a*b*c", False),
        ("abab", "*ab", True), ("aXbYc", "a?b?c", True), ("a*c", "a*c", True),
    ],
)  # fmt: skip
def test_glob_match(text: str, pattern: str, expected: bool) -> None:
    assert glob_match(text, pattern) is expected


# -- answers, never exceptions --------------------------------------------------------


def _nested(depth: int) -> str:
    return '{"Statement": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    "document",
    [
        _nested(100_000),  # RecursionError in json (regression)
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": ASSUME,
                        "Condition": {"NumericEquals": {"aws:MultiFactorAuthAge": 10**5000}}}]},
        {"Statement": [{"Effect": "Allow", "Principal": {"AWS": 10**5000}, "Action": ASSUME}]},
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": [[[[ASSUME]]]]}]},
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": ASSUME,
                        "Condition": {"StringEquals": {"sts:ExternalId": {"a": "b"}}}}]},
        '{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole", '
        '"Condition": {"NumericEquals": {"aws:MultiFactorAuthAge": ' + "9" * 5000 + "}}}]}",
    ],
    ids=["deep-json", "huge-int-condition", "huge-int-principal", "nested-action",
         "object-value", "huge-int-json"],
)  # fmt: skip
def test_malformed_documents_are_answered(document: Any) -> None:
    parsed = parse_policy(document)
    assert parsed.problems
    decision = evaluate(document, USER, ASSUME, {"aws:MultiFactorAuthAge": "10", EID: "x"})
    assert decision.outcome in ("deny", "unknown")


def test_context_values_of_any_shape_are_answered() -> None:
    document = {"Version": "2012-10-17", "Statement": [
        allow(condition={"ForAnyValue:StringEquals": {TAGS: ["team"]}})]}  # fmt: skip
    # a list where a tuple is expected (regression: bare AssertionError)
    assert evaluate(document, USER, ASSUME, {TAGS: ["team", "x"]}).outcome == "allow"
    assert evaluate(document, USER, ASSUME, {TAGS: [1, 10**5000]}).outcome == "deny"
    context = RequestContext({TAGS: ["team"]})
    assert evaluate(document, USER, ASSUME, context).outcome == "allow"


def test_a_wildcard_principal_arn_is_a_problem() -> None:
    parsed = parse_policy({"Version": "2012-10-17", "Statement": [
        allow({"AWS": "arn:aws:iam::111111111111:role/*"})]})  # fmt: skip
    assert parsed.statements == ()
    assert any("wildcard" in p for p in parsed.problems)
