"""Shell export lines: exact forms, and hostile values run through real shells."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from rolechain.credentials.shells import (
    Exports,
    apply,
    detect_shell,
    environment_for,
    quote,
    render,
)

HOSTILE = [
    "plain",
    "it's",
    "'",
    "''",
    'double "quoted"',
    "$HOME and ${HOME} and $(echo pwned)",
    "`echo pwned`",
    "back\\slash\\",
    "\\'",
    "line one\nline two\n",
    "tab\there",
    "semi; rm -rf / #",
    "glob * ? [a]",
    "~ tilde",
    "!bang !! history",
    "unicode \u00e9\u4e2d \u2018smart\u2019 \u201aquotes\u201b",
    "",
    "%PATH% & | < >",
    "carriage\rreturn and \u2028 line \u2029 separators, \x0b\x0c and ---",
]

DUMP = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]


def exports_of(values: list[str]) -> Exports:
    return Exports(set=tuple((f"RC_TEST_{i}", v) for i, v in enumerate(values)), unset=("RC_GONE",))


def run_posix(shell: str, script: str) -> dict[str, str]:
    program = script + "\nexec " + " ".join(f"'{a}'" for a in DUMP[:2]) + ' "$RC_DUMP"\n'
    out = subprocess.run(
        [shell, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "RC_GONE": "still here", "RC_DUMP": DUMP[2], "HOME": "/h"},
    )
    return dict(json.loads(out.stdout))


@pytest.mark.parametrize("shell", ["sh", "bash", "dash", "zsh"])
def test_posix_shells_take_values_literally(shell: str) -> None:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed")
    kind = "zsh" if shell == "zsh" else ("bash" if shell == "bash" else "sh")
    env = run_posix(path, render(kind, exports_of(HOSTILE)))
    for i, value in enumerate(HOSTILE):
        assert env[f"RC_TEST_{i}"] == value
    assert "RC_GONE" not in env


def test_fish_takes_values_literally() -> None:
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed")
    script = render("fish", exports_of(HOSTILE)) + f"exec {' '.join(DUMP[:2])} '{DUMP[2]}'\n"
    out = subprocess.run([fish, "-c", script], capture_output=True, text=True, check=True)
    env = json.loads(out.stdout)
    for i, value in enumerate(HOSTILE):
        assert env[f"RC_TEST_{i}"] == value


def test_powershell_takes_values_literally() -> None:
    pwsh = shutil.which("pwsh")
    if pwsh is None:
        pytest.skip("pwsh is not installed")
    script = render("powershell", exports_of(HOSTILE)) + f"& '{DUMP[0]}' -c '{DUMP[2]}'\n"
    out = subprocess.run([pwsh, "-NoProfile", "-Command", script], capture_output=True, text=True)
    env = json.loads(out.stdout)
    for i, value in enumerate(HOSTILE):
        if value:  # PowerShell removes a variable set to ''
            assert env[f"RC_TEST_{i}"] == value


def test_exact_forms() -> None:
    exports = Exports(set=(("A", "it's $x"),), unset=("AWS_PROFILE",))
    assert render("sh", exports) == "unset AWS_PROFILE\nexport A='it'\"'\"'s $x'\n"
    assert render("bash", exports) == render("sh", exports)
    assert render("fish", exports) == "set -e AWS_PROFILE\nset -gx A 'it\\'s $x'\n"
    assert render("powershell", exports) == (
        "Remove-Item -ErrorAction SilentlyContinue Env:AWS_PROFILE\n$Env:A = 'it''s $x'\n"
    )


def test_fish_escapes_backslashes_and_powershell_smart_quotes() -> None:
    assert quote("fish", "a\\'b") == "'a\\\\\\'b'"
    assert quote("powershell", "a\u2019b") == "'a\u2019\u2019b'"
    assert quote("sh", "a\\b") == "'a\\b'"


def test_nul_and_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        quote("sh", "a\0b")
    with pytest.raises(ValueError, match="variable name"):
        render("sh", Exports(set=(("BAD NAME", "x"),)))
    with pytest.raises(ValueError, match="variable name"):
        render("sh", Exports(set=(), unset=("$(x)",)))


def test_environment_for_and_apply() -> None:
    expiry = datetime(2026, 11, 29, 13, 0, tzinfo=UTC)
    exports = environment_for("ASIAKEY", "secret", "token", expiry, "eu-west-1")
    assert dict(exports.set) == {
        "AWS_ACCESS_KEY_ID": "ASIAKEY",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_CREDENTIAL_EXPIRATION": "2026-11-29T13:00:00Z",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    env = apply(exports, {"AWS_PROFILE": "x", "AWS_DEFAULT_PROFILE": "y", "KEEP": "1"})
    assert "AWS_PROFILE" not in env
    assert "AWS_DEFAULT_PROFILE" not in env
    assert env["KEEP"] == "1"
    assert env["AWS_ACCESS_KEY_ID"] == "ASIAKEY"
    assert "AWS_REGION" not in dict(environment_for("k", "s", "t", expiry, None).set)


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ("/bin/bash", "bash"),
        ("/usr/bin/zsh", "zsh"),
        ("/usr/local/bin/fish", "fish"),
        ("/usr/bin/pwsh", "powershell"),
        ("/bin/dash", "sh"),
        ("", "sh"),
    ],
)
def test_detect_shell(shell: str, expected: str) -> None:
    assert detect_shell({"SHELL": shell}) == expected
