"""AWS config files to chain files and back.

:func:`import_aws_config` reads the profiles of an AWS config file (and its credentials
file) and writes an equivalent chain file:

- a profile with static keys (``aws_access_key_id`` in either file) becomes a principal
  with ``source: profile`` (``kind: user``; ``session`` when it also has a session token);
- an IAM Identity Center profile (``sso_session`` or ``sso_*``) becomes a session
  principal with ``source: profile``;
- ``credential_source`` becomes a session principal: ``Environment`` reads the AWS_*
  variables (``source: env``), ``Ec2InstanceMetadata`` and ``EcsContainer`` use the default
  credential chain, which ends at the instance or container role;
- a profile with ``role_arn`` becomes a role (``external_id``, ``mfa_serial``,
  ``duration_seconds``, ``region``) trusting the node of its ``source_profile`` or
  ``credential_source``, and a job of the same name that goes from the root principal to
  that role through exactly the same intermediate roles (``via``), with the profile's
  ``role_session_name`` and ``region``;
- a profile whose ``credential_process`` is ``rolechain credentials PATH --target T``
  (what :func:`export_aws_config` writes) is resolved through that chain file, so
  import, export, import gives back the same chain.

Anything else (``web_identity_token_file``, another tool's ``credential_process``, a
broken reference) is reported as an :class:`Unmapped` item, never silently dropped. A
``source_profile`` with no credentials in the files read (a shared config whose keys come
from elsewhere, or no credentials file at all, as in CI) still becomes a ``source: profile``
principal, so the chain is kept, with a warning (:attr:`ImportResult.warnings`). Names
are profile names made to fit the chain-file name pattern.

:func:`export_aws_config` writes ``[profile NAME]`` sections whose ``credential_process`` is
``rolechain credentials <absolute chain path> --target T --job J``.
"""

from __future__ import annotations

import configparser
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rolechain.model.schema import NAME_PATTERN, ROLE_ARN_PATTERN
from rolechain.model.writer import comment as _comment
from rolechain.model.writer import emit as _emit
from rolechain.model.writer import scalar as _scalar

CREDENTIAL_SOURCES = {
    "Environment": ("env", "env", "the AWS_* environment variables"),
    "Ec2InstanceMetadata": ("instance-role", "default", "the EC2 instance profile (IMDS)"),
    "EcsContainer": ("container-role", "default", "the ECS/EKS container credentials"),
}
_OPAQUE_KEYS = {
    "web_identity_token_file": "web identity federation (AssumeRoleWithWebIdentity) is not a "
    "hop rolechain plans",
    "credential_process": "credential_process of another tool: rolechain cannot see which "
    "identity it returns",
}
_SSO_KEYS = ("sso_session", "sso_start_url", "sso_account_id", "sso_role_name")
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Unmapped:
    """Something in the AWS config that the chain file does not express."""

    profile: str
    message: str

    def __str__(self) -> str:
        return f"[{self.profile}] {self.message}" if self.profile else self.message


@dataclass
class _Node:
    kind: str  # "principal" | "role" | "role_set"
    name: str
    body: dict[str, Any]
    comment: str


@dataclass
class ImportResult:
    """The chain file text and what could not be mapped."""

    text: str
    unmapped: list[Unmapped]
    principals: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    warnings: list[Unmapped] = field(default_factory=list)  # mapped, but worth checking


@dataclass(frozen=True)
class RolechainProfile:
    """A profile that already runs ``rolechain credentials PATH --target T [--job J]``."""

    path: str
    target: str
    job: str | None


@dataclass
class ResolvedPath:
    """A rolechain profile's target as chain-file fragments (see :func:`resolve_with_chain`)."""

    principal: tuple[str, dict[str, Any]]
    hops: list[ResolvedHop]  # first hop first
    job_session_name: str | None
    job_regions: list[str] | str | None  # the job's own ``regions`` (None: the default)


@dataclass
class ResolvedHop:
    """A role (``kind`` "role") or one member of a role set (``kind`` "role_set")."""

    kind: str
    name: str  # the key under roles or role_sets
    node: str  # the node name a job uses: the role, or set@account
    body: dict[str, Any]


Resolver = Callable[[RolechainProfile], ResolvedPath]


# -- reading -----------------------------------------------------------------------------


def _parser() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(
        interpolation=None, strict=False, default_section="\0none"
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    return parser


def parse_profiles(
    config_text: str, credentials_text: str | None = None
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]], list[Unmapped]]:
    """Profiles (config merged with credentials, config winning) and ``sso-session`` blocks."""
    notes: list[Unmapped] = []
    config = _parser()
    config.read_string(config_text, source="config")
    profiles: dict[str, dict[str, str]] = {}
    sso_sessions: dict[str, dict[str, str]] = {}
    for section in config.sections():
        values = {k.strip(): v.strip() for k, v in config.items(section)}
        if section == "default":
            profiles["default"] = values
        elif section.startswith("profile "):
            profiles[section[len("profile ") :].strip()] = values
        elif section.startswith("sso-session "):
            sso_sessions[section[len("sso-session ") :].strip()] = values
        elif section.startswith("services "):
            notes.append(Unmapped(section, "service-specific endpoint settings are not mapped"))
        else:
            notes.append(
                Unmapped(section, "not a profile (config sections are [profile NAME]); ignored")
            )
    if credentials_text:
        creds = _parser()
        creds.read_string(credentials_text, source="credentials")
        for section in creds.sections():
            values = {k.strip(): v.strip() for k, v in creds.items(section)}
            merged = dict(values)
            merged.update(profiles.get(section, {}))
            merged["\0in_credentials_file"] = "1"
            profiles[section] = merged
    return profiles, sso_sessions, notes


_CREDENTIAL_KEYS = ("role_arn", "credential_source", "credential_process", *_OPAQUE_KEYS)


def _keys_elsewhere(values: Mapping[str, str]) -> bool:
    """A profile that names no credentials at all (region, output...): its keys, if any,
    live in a credentials file that was not read."""
    keys = set(values) - {k for k in values if k.startswith("\0")}
    return not keys & {*_CREDENTIAL_KEYS, *_SSO_KEYS, "aws_access_key_id"}


def parse_rolechain_process(command: str) -> RolechainProfile | None:
    """The chain path, target and job of a ``rolechain credentials`` command, else None."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if not argv:
        return None
    program = argv[0].rsplit("/", 1)[-1]
    rest: list[str]
    if program == "rolechain":
        rest = argv[1:]
    elif program.startswith("python") and argv[1:3] == ["-m", "rolechain"]:
        rest = argv[3:]
    else:
        return None
    if not rest or rest[0] != "credentials":
        return None
    path: str | None = None
    target: str | None = None
    job: str | None = None
    i = 1
    while i < len(rest):
        arg = rest[i]
        if arg in ("--target", "-t", "--job", "-j") and i + 1 < len(rest):
            if arg in ("--target", "-t"):
                target = rest[i + 1]
            else:
                job = rest[i + 1]
            i += 2
            continue
        if arg.startswith("--target="):
            target = arg.split("=", 1)[1]
        elif arg.startswith("--job="):
            job = arg.split("=", 1)[1]
        elif not arg.startswith("-") and path is None:
            path = arg
        i += 1
    if path is None or target is None:
        return None
    return RolechainProfile(path=path, target=target, job=job)


# -- naming ------------------------------------------------------------------------------


def sanitize_name(text: str) -> str:
    """``text`` made into a chain-file name: ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip())
    name = name.lstrip("_.-")[:64].rstrip("-") or "profile"
    if not name[0].isalnum():
        name = "p" + name[:63]
    assert _NAME.fullmatch(name), name
    return name


class _Names:
    """Unique chain names for profiles, stable in the order asked."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, wanted: str) -> str:
        base = sanitize_name(wanted)
        name, n = base, 1
        while name.lower() in self.used:
            n += 1
            suffix = f"-{n}"
            name = base[: 64 - len(suffix)] + suffix
        self.used.add(name.lower())
        return name


# -- import ------------------------------------------------------------------------------


def import_aws_config(
    config_text: str,
    credentials_text: str | None = None,
    *,
    source: str = "~/.aws/config",
    credentials_source: str | None = None,
    resolver: Resolver | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """An equivalent chain file for the profiles in ``config_text`` (and credentials)."""
    profiles, sso_sessions, unmapped = parse_profiles(config_text, credentials_text)
    warnings: list[Unmapped] = []
    names = _Names()
    # Reserve every profile's own name first so derived names never steal one.
    profile_names = {p: names.take(p) for p in profiles}
    principals: dict[str, _Node] = {}  # node name -> node
    roles: dict[str, _Node] = {}
    role_sets: dict[str, _Node] = {}
    jobs: dict[str, _Node] = {}
    settings_region = profiles.get("default", {}).get("region")

    # A profile's node: ("principal"|"role", name) once built; None when unmappable.
    built: dict[str, tuple[str, str] | None] = {}
    visiting: set[str] = set()

    def where(profile: str) -> str:
        return "[default]" if profile == "default" else f"[profile {profile}]"

    def principal_for_source(cred_source: str, profile: str) -> str | None:
        spec = CREDENTIAL_SOURCES.get(cred_source)
        if spec is None:
            unmapped.append(
                Unmapped(
                    profile,
                    f"credential_source {cred_source!r} is not one of "
                    f"{', '.join(CREDENTIAL_SOURCES)}",
                )
            )
            return None
        wanted, src, what = spec
        for node in principals.values():
            if node.body.get("source") == src and node.comment.startswith(
                f"credential_source = {cred_source}"
            ):
                return node.name
        name = names.take(wanted)
        principals[name] = _Node(
            "principal",
            name,
            {"source": src, "kind": "session"},
            f"credential_source = {cred_source}: {what} (a session; set kind: user if these "
            "are long-term IAM user keys)",
        )
        return name

    def static_principal(profile: str, values: Mapping[str, str], name: str) -> str:
        kind = "session" if values.get("aws_session_token") else "user"
        body: dict[str, Any] = {"source": "profile", "profile": profile, "kind": kind}
        if values.get("region"):
            body["region"] = values["region"]
        in_file = "the credentials file" if "\0in_credentials_file" in values else "the config"
        principals[name] = _Node(
            "principal", name, body, f"{where(profile)}: static keys in {in_file}"
        )
        return name

    def keys_elsewhere_principal(profile: str) -> str:
        """A source_profile whose credentials are not in the files read."""
        name = profile_names[profile]
        body: dict[str, Any] = {"source": "profile", "profile": profile, "kind": "session"}
        if profiles[profile].get("region"):
            body["region"] = profiles[profile]["region"]
        principals[name] = _Node(
            "principal",
            name,
            body,
            f"{where(profile)}: a source_profile without credentials in the files read",
        )
        warnings.append(
            Unmapped(
                profile,
                "used as a source_profile but holds no credentials in the files read (no "
                f"credentials file?); mapped as principal {name!r} reading this profile, "
                "kind: session (set kind: user if it will hold long-term IAM user keys)",
            )
        )
        return name

    def build(profile: str) -> tuple[str, str] | None:
        if profile in built:
            return built[profile]
        if profile in visiting:
            unmapped.append(Unmapped(profile, "source_profile loop; not mapped"))
            built[profile] = None
            return None
        visiting.add(profile)
        try:
            result = _build(profile)
        finally:
            visiting.discard(profile)
        built[profile] = result
        return result

    def _build(profile: str) -> tuple[str, str] | None:
        values = profiles[profile]
        name = profile_names[profile]
        for key, why in _OPAQUE_KEYS.items():
            if key not in values:
                continue
            if key == "credential_process" and parse_rolechain_process(values[key]):
                continue
            # botocore can still produce these credentials: a session principal that reads
            # the profile keeps them usable as the start of a chain.
            unmapped.append(
                Unmapped(
                    profile,
                    f"{key}: {why}; mapped only as session principal {name!r} reading this profile",
                )
            )
            principals[name] = _Node(
                "principal",
                name,
                {"source": "profile", "profile": profile, "kind": "session"},
                f"{where(profile)}: {key} (opaque to rolechain)",
            )
            return ("principal", name)
        if "role_arn" in values:
            return _build_role(profile, values, name)
        if "credential_process" in values:
            return _build_rolechain(profile, values)
        if any(k in values for k in _SSO_KEYS):
            body: dict[str, Any] = {"source": "profile", "profile": profile, "kind": "session"}
            if values.get("region"):
                body["region"] = values["region"]
            sso = values.get("sso_session")
            detail = f"IAM Identity Center (sso-session {sso})" if sso else "IAM Identity Center"
            if sso and sso not in sso_sessions:
                unmapped.append(
                    Unmapped(profile, f"sso_session {sso!r} has no [sso-session] block")
                )
            account = values.get("sso_account_id")
            if account and re.fullmatch(r"[0-9]{12}", account):
                body["account"] = account
            principals[name] = _Node(
                "principal",
                name,
                body,
                f"{where(profile)}: {detail}, role {values.get('sso_role_name', '?')}: a session",
            )
            return ("principal", name)
        if values.get("aws_access_key_id"):
            return ("principal", static_principal(profile, values, name))
        return None

    def _build_role(profile: str, values: Mapping[str, str], name: str) -> tuple[str, str] | None:
        arn = values["role_arn"]
        if not re.match(ROLE_ARN_PATTERN, arn):
            unmapped.append(Unmapped(profile, f"role_arn {arn!r} is not an IAM role ARN"))
            return None
        src_profile = values.get("source_profile")
        cred_source = values.get("credential_source")
        caller: str | None
        how: str
        if src_profile and cred_source:
            unmapped.append(
                Unmapped(profile, "has both source_profile and credential_source; not mapped")
            )
            return None
        if cred_source:
            caller = principal_for_source(cred_source, profile)
            how = f"credential_source {cred_source}"
        elif src_profile:
            if src_profile not in profiles:
                unmapped.append(Unmapped(profile, f"source_profile {src_profile!r} does not exist"))
                return None
            if src_profile == profile:
                if not profiles[profile].get("aws_access_key_id"):
                    unmapped.append(
                        Unmapped(profile, "source_profile names itself but has no static keys")
                    )
                    return None
                caller = static_principal(profile, values, names.take(f"{profile}-keys"))
                unmapped.append(
                    Unmapped(
                        profile,
                        "source_profile names the profile itself: principal "
                        f"{caller!r} reads profile {profile!r}, which botocore resolves to "
                        "the role, not the keys; move the keys to a profile of their own",
                    )
                )
            else:
                parent = build(src_profile)
                if parent is None and _keys_elsewhere(profiles[src_profile]):
                    parent = ("principal", keys_elsewhere_principal(src_profile))
                    built[src_profile] = parent
                if parent is None:
                    unmapped.append(
                        Unmapped(profile, f"its source_profile {src_profile!r} is not mapped")
                    )
                    return None
                caller = parent[1]
            how = f"source_profile {src_profile}"
        else:
            unmapped.append(
                Unmapped(profile, "role_arn without source_profile or credential_source")
            )
            return None
        if caller is None:
            return None
        body: dict[str, Any] = {"arn": arn, "trusts": [caller]}
        duration = values.get("duration_seconds")
        if duration:
            if re.fullmatch("[0-9]{1,9}", duration):
                seconds = int(duration)
                if seconds > 3600:
                    body["max_session_duration"] = seconds
                body["duration"] = seconds
            else:
                unmapped.append(Unmapped(profile, f"duration_seconds {duration!r} is not a number"))
        for key in ("external_id", "mfa_serial", "region"):
            if values.get(key):
                body[key] = values[key]
        roles[name] = _Node("role", name, body, f"{where(profile)}: role_arn via {how}")
        _add_job(profile, values, name)
        return ("role", name)

    def _path_of(role: str) -> tuple[str, list[str]]:
        """(root principal, roles from the first hop to ``role``)."""
        chain = [role]
        caller = roles[role].body["trusts"][0]
        while caller in roles:
            chain.append(caller)
            caller = roles[caller].body["trusts"][0]
        return caller, list(reversed(chain))

    def _add_job(profile: str, values: Mapping[str, str], role: str) -> None:
        root, path = _path_of(role)
        body: dict[str, Any] = {"from": root, "to": role}
        if len(path) > 1:
            body["via"] = path[:-1]
        if values.get("region"):
            body["regions"] = [values["region"]]
        if values.get("role_session_name"):
            body["session_name"] = values["role_session_name"]
        jobs[role] = _Node("job", role, body, f"{where(profile)}: the profile's whole chain")

    def _build_rolechain(profile: str, values: Mapping[str, str]) -> tuple[str, str] | None:
        ref = parse_rolechain_process(values["credential_process"])
        assert ref is not None
        if resolver is None:
            unmapped.append(Unmapped(profile, "uses rolechain credentials; not resolved"))
            return None
        try:
            resolved = resolver(ref)
        except Exception as exc:  # the resolver loads and plans another chain file
            unmapped.append(
                Unmapped(profile, f"cannot resolve rolechain profile {ref.path}: {exc}")
            )
            return None
        p_name, p_body = resolved.principal
        comment = f"{where(profile)}: from rolechain chain {ref.path}"
        principals.setdefault(p_name, _Node("principal", p_name, p_body, comment))
        names.used.add(p_name.lower())
        for hop in resolved.hops:
            table = roles if hop.kind == "role" else role_sets
            names.used.add(hop.name.lower())
            if hop.name not in table:
                table[hop.name] = _Node(hop.kind, hop.name, hop.body, comment)
                continue
            existing = table[hop.name].body
            for key in ("trusts", "accounts"):
                if key in hop.body:
                    existing[key] = sorted(set(existing.get(key, [])) | set(hop.body[key]))
        job_name = profile_names[profile]
        body: dict[str, Any] = {"from": p_name, "to": ref.target}
        via = [hop.node for hop in resolved.hops[:-1]]
        if via:
            body["via"] = via
        if resolved.job_regions is not None:
            body["regions"] = resolved.job_regions
        if resolved.job_session_name:
            body["session_name"] = resolved.job_session_name
        jobs[job_name] = _Node("job", job_name, body, comment)
        last = resolved.hops[-1]
        return (last.kind, last.node)

    for profile in profiles:
        build(profile)
    for profile in profiles:  # after all: a later role may map an earlier source_profile
        values = profiles[profile]
        credential_keys = {"role_arn", "aws_access_key_id", "credential_process"}
        if (
            built.get(profile) is None
            and not any(u.profile == profile for u in unmapped)
            and not (credential_keys & set(values))
        ):
            extra = sorted(k for k in values if not k.startswith("\0"))
            if profile != "default" or set(extra) - {"region", "output"}:
                unmapped.append(
                    Unmapped(
                        profile, "no credentials (only " + (", ".join(extra) or "nothing") + ")"
                    )
                )

    text = _render_chain(
        principals=principals,
        roles=roles,
        role_sets=role_sets,
        jobs=jobs,
        settings_region=settings_region,
        header=_header(source, credentials_source, now),
    )
    return ImportResult(
        text=text,
        unmapped=unmapped,
        principals=list(principals),
        roles=list(roles),
        jobs=list(jobs),
        warnings=warnings,
    )


def _header(source: str, credentials_source: str | None, now: datetime | None) -> list[str]:
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        "Generated by `rolechain import-aws-config` from " + source,
    ]
    if credentials_source:
        lines.append("and " + credentials_source)
    lines += [
        f"at {moment}. Each entry names the profile it came from.",
        "Principals still read their credentials from those AWS profiles (source: profile);",
        "roles and jobs replace the profiles' role_arn/source_profile chains.",
        "Check it with: rolechain validate <this file>",
    ]
    return lines


# -- YAML output -------------------------------------------------------------------------


def _render_chain(
    *,
    principals: Mapping[str, _Node],
    roles: Mapping[str, _Node],
    role_sets: Mapping[str, _Node],
    jobs: Mapping[str, _Node],
    settings_region: str | None,
    header: Sequence[str],
) -> str:
    out = [_comment(line) for line in header]
    out.append("version: 1")
    if settings_region:
        out.append("settings:")
        out.append(f"  region: {_scalar(settings_region)}  # from [default]")
    for section, nodes in (
        ("principals", principals),
        ("roles", roles),
        ("role_sets", role_sets),
        ("jobs", jobs),
    ):
        if not nodes:
            continue
        out.append("")
        out.append(f"{section}:")
        for node in nodes.values():
            out.append("  " + _comment(node.comment))
            if node.body:
                out.append(f"  {_scalar(node.name)}:")
                _emit(node.body, 2, out)
            else:
                out.append(f"  {_scalar(node.name)}: {{}}")
    return "\n".join(out) + "\n"


# -- export ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedProfile:
    """One ``[profile NAME]`` of an exported config."""

    name: str
    job: str
    target: str
    region: str | None
    role_arn: str


def profile_names_for(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """A profile name per (job, target): the target's name when only one job reaches it,
    else ``<job>.<target>``."""
    pairs = list(pairs)
    by_target: dict[str, set[str]] = {}
    for job, target in pairs:
        by_target.setdefault(target, set()).add(job)
    out: dict[tuple[str, str], str] = {}
    for job, target in pairs:
        out[(job, target)] = target if len(by_target[target]) == 1 else f"{job}.{target}"
    return out


def export_aws_config(
    profiles: Sequence[ExportedProfile],
    *,
    chain_path: str,
    command: Sequence[str] = ("rolechain",),
    now: datetime | None = None,
) -> str:
    """An AWS config file with a ``credential_process`` profile for each of ``profiles``."""
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = [
        _ini_comment(f"Generated by `rolechain export-aws-config` from {chain_path} at {moment}."),
        "# Each profile gets its credentials from rolechain (cached; see `rolechain cache list`).",
        "# Use one with: aws --profile NAME ..., AWS_PROFILE=NAME, or Terraform's profile = NAME.",
    ]
    for profile in profiles:
        if not re.fullmatch(r"[A-Za-z0-9_.@+=,:/-]+", profile.name):
            raise ValueError(f"not a usable profile name: {profile.name!r}")
        argv = [
            *command,
            "credentials",
            chain_path,
            "--target",
            profile.target,
            "--job",
            profile.job,
        ]
        for word in argv:
            # shlex quotes the words for the SDKs' shell-style split, but a line break in
            # one would end the INI line and start a key (or a [profile]) of its own
            if _LINE_BREAKING.search(word):
                raise ValueError(
                    f"{word!r} has a control or line-break character: it cannot be written "
                    "into a credential_process line"
                )
        out.append("")
        out.append(_ini_comment(f"job {profile.job}, target {profile.target}: {profile.role_arn}"))
        out.append(f"[profile {profile.name}]")
        out.append("credential_process = " + shlex.join(argv))
        if profile.region:
            out.append(f"region = {profile.region}")
    return "\n".join(out) + "\n"


_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _ini_comment(text: str) -> str:
    return "# " + _LINE_BREAKING.sub(" ", text)


# -- resolving rolechain profiles through their chain file -------------------------------


def resolve_with_chain(
    load: Callable[[str], Any], plan: Callable[[Any, str, str], Any]
) -> Resolver:
    """A :data:`Resolver` that loads the referenced chain file and plans the target.

    ``load(path) -> Chain`` and ``plan(chain, job, target) -> Plan`` are passed in so that
    this module stays independent of how the CLI loads and plans (and is easy to test).
    The result copies the job's principal, every role on the target's planned path (with
    ``trusts`` narrowed to the copied callers) and the job's session-name template.
    """
    chains: dict[str, Any] = {}

    def resolve(ref: RolechainProfile) -> ResolvedPath:
        chain = chains.get(ref.path)
        if chain is None:
            chain = chains[ref.path] = load(ref.path)
        model = chain.model
        job = ref.job
        if job is None:
            if len(model.jobs) != 1:
                raise ValueError("the profile names no --job and the chain has several jobs")
            job = next(iter(model.jobs))
        planned = plan(chain, job, ref.target)
        target = planned.target(ref.target)
        hops = planned.path_hops(target)
        principal = model.principals[planned.principal]
        out_hops: list[ResolvedHop] = []
        for hop in hops:
            node = hop.role
            if node in model.roles:
                body = model.roles[node].model_dump(
                    mode="json", by_alias=True, exclude_defaults=True
                )
                body["trusts"] = [hop.caller]
                out_hops.append(ResolvedHop("role", node, node, body))
            else:
                set_name, _, account = node.rpartition("@")
                spec = model.role_sets[set_name]
                body = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
                body.pop("organization", None)
                body.pop("exclude", None)
                body["accounts"] = [account]
                body["trusts"] = [hop.caller]
                out_hops.append(ResolvedHop("role_set", set_name, node, body))
        job_regions = model.jobs[job].regions
        return ResolvedPath(
            principal=(
                planned.principal,
                principal.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            ),
            hops=out_hops,
            job_session_name=model.jobs[job].session_name,
            job_regions=list(job_regions) if isinstance(job_regions, list) else job_regions,
        )

    return resolve
