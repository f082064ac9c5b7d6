"""Environment variables for a target's credentials, and shell lines that set them safely.

``environment_for`` gives the variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_CREDENTIAL_EXPIRATION``, ``AWS_REGION``,
``AWS_DEFAULT_REGION``) and the ones to remove
(:data:`rolechain.aws.environment.CONFLICTING_VARIABLES`: ``AWS_PROFILE``,
``AWS_SECURITY_TOKEN``, web identity and container credentials..., any of which would make
an SDK use other credentials). ``render`` turns them
into lines for one shell, quoting every value so that no character in it (quotes, ``$``,
backticks, backslashes, newlines) is ever interpreted:

- POSIX sh, bash, zsh: ``export NAME='value'``; a ``'`` inside becomes ``'"'"'``.
- fish: ``set -gx NAME 'value'``; inside fish single quotes only ``\\`` and ``\\'`` are
  escapes, so both are escaped.
- PowerShell: ``$Env:NAME = 'value'``; inside single quotes only a quote is special, and
  PowerShell also treats the typographic quotes U+2018..U+201B as quotes, so each of them
  is doubled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from rolechain.aws.environment import CONFLICTING_VARIABLES

Shell = Literal["sh", "bash", "zsh", "fish", "powershell"]
SHELLS: tuple[Shell, ...] = ("sh", "bash", "zsh", "fish", "powershell")
UNSET_VARIABLES = CONFLICTING_VARIABLES
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PWSH_QUOTES = "'\u2018\u2019\u201a\u201b"


@dataclass(frozen=True)
class Exports:
    """Variables to set and variables to remove, in order (a variable that is set is not
    also removed)."""

    set: tuple[tuple[str, str], ...]
    unset: tuple[str, ...] = UNSET_VARIABLES

    @property
    def removed(self) -> tuple[str, ...]:
        setting = {name for name, _ in self.set}
        return tuple(name for name in self.unset if name not in setting)


def environment_for(
    access_key_id: str,
    secret_access_key: str,
    session_token: str,
    expiration: datetime,
    region: str | None,
) -> Exports:
    """The variables that hand these credentials (and region) to any AWS SDK or tool."""
    pairs = [
        ("AWS_ACCESS_KEY_ID", access_key_id),
        ("AWS_SECRET_ACCESS_KEY", secret_access_key),
        ("AWS_SESSION_TOKEN", session_token),
        ("AWS_CREDENTIAL_EXPIRATION", expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    ]
    if region:
        pairs += [("AWS_REGION", region), ("AWS_DEFAULT_REGION", region)]
    return Exports(set=tuple(pairs))


def apply(exports: Exports, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``exports`` applied: the environment for a child process."""
    env = {k: v for k, v in base.items() if k not in set(exports.unset)}
    env.update(exports.set)
    return env


def detect_shell(environ: Mapping[str, str] | None = None) -> Shell:
    """The shell named by ``$SHELL`` (``pwsh`` counts as powershell); ``sh`` otherwise."""
    env = os.environ if environ is None else environ
    name = os.path.basename(env.get("SHELL", "")).lower()
    name = name.removesuffix(".exe")
    if name in ("pwsh", "powershell"):
        return "powershell"
    if name in ("bash", "zsh", "fish"):
        return name  # type: ignore[return-value]
    return "sh"


def quote(shell: Shell, value: str) -> str:
    """``value`` as one literal word of ``shell``."""
    if "\0" in value:
        raise ValueError("an environment value cannot contain a NUL character")
    if shell == "fish":
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if shell == "powershell":
        out = []
        for ch in value:
            out.append(ch + ch if ch in _PWSH_QUOTES else ch)
        return "'" + "".join(out) + "'"
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not an environment variable name: {name!r}")
    return name


def render(shell: Shell, exports: Exports) -> str:
    """Lines for ``shell`` that remove ``exports.unset`` and set ``exports.set``."""
    lines: list[str] = []
    for name in exports.removed:
        _check_name(name)
        if shell == "fish":
            lines.append(f"set -e {name}")
        elif shell == "powershell":
            lines.append(f"Remove-Item -ErrorAction SilentlyContinue Env:{name}")
        else:
            lines.append(f"unset {name}")
    for name, value in exports.set:
        _check_name(name)
        if shell == "fish":
            lines.append(f"set -gx {name} {quote(shell, value)}")
        elif shell == "powershell":
            lines.append(f"$Env:{name} = {quote(shell, value)}")
        else:
            lines.append(f"export {name}={quote(shell, value)}")
    return "\n".join(lines) + "\n"


def usage_hint(shell: Shell, command: Sequence[str]) -> str:
    """How to load the output into the current shell (shown on stderr when it is a tty)."""
    text = " ".join(command)
    if shell == "fish":
        return f"{text} | source"
    if shell == "powershell":
        return f"{text} | Invoke-Expression"
    return f'eval "$({text})"'
