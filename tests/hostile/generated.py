"""Hostile inputs made at test time: too big to commit, or not files git can hold (FIFOs,
devices, sockets, dangling symlinks, names that are not UTF-8).

Each generator writes its case under ``where`` (an empty directory) and returns the path
to give rolechain. ``manifest.toml`` names a generated case by ``generate = "NAME"``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

BASE = """version: 1
principals:
  ci: {kind: session}
roles:
  hub:
    arn: arn:aws:iam::111111111111:role/hub
    trusts: [ci]
jobs:
  j:
    from: ci
    to: hub
"""

Generator = Callable[[Path], Path]
GENERATORS: dict[str, Generator] = {}


def generator(func: Generator) -> Generator:
    GENERATORS[func.__name__.replace("_", "-")] = func
    return func


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _role(extra: str) -> str:
    return BASE.replace("    trusts: [ci]\n", "    trusts: [ci]\n    " + extra + "\n")


# -- not regular files -------------------------------------------------------------------


@generator
def fifo(where: Path) -> Path:
    path = where / "chain.yaml"
    os.mkfifo(path)
    return path


@generator
def symlink_to_dev_zero(where: Path) -> Path:
    path = where / "chain.yaml"
    path.symlink_to("/dev/zero")
    return path


@generator
def symlink_to_dev_urandom(where: Path) -> Path:
    path = where / "chain.yaml"
    path.symlink_to("/dev/urandom")
    return path


@generator
def dev_null(where: Path) -> Path:
    return Path("/dev/null")


@generator
def unix_socket(where: Path) -> Path:
    path = where / "chain.yaml"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    return path


@generator
def symlink_loop(where: Path) -> Path:
    (where / "a.yaml").symlink_to(where / "b.yaml")
    (where / "b.yaml").symlink_to(where / "a.yaml")
    return where / "a.yaml"


@generator
def dangling_symlink(where: Path) -> Path:
    path = where / "chain.yaml"
    path.symlink_to(where / "gone.yaml")
    return path


@generator
def huge_sparse_file(where: Path) -> Path:
    path = where / "chain.yaml"
    with path.open("wb") as handle:  # 65 MiB of holes: refused before a byte is read
        handle.truncate(65 * 1024 * 1024)
    return path


@generator
def symlink_to_directory_chain(where: Path) -> Path:
    _write(where / "real" / "chain.yaml", BASE)
    (where / "link").symlink_to(where / "real")
    return where / "link"


# -- directories ---------------------------------------------------------------------------


def _chain_dir(where: Path, add: Callable[[Path], object]) -> Path:
    """A chain directory holding a valid ``a.yaml``, and whatever ``add`` puts next to it."""
    chain = where / "chain"
    _write(chain / "a.yaml", BASE)
    add(chain)
    return chain


@generator
def dir_with_dangling_symlink(where: Path) -> Path:
    return _chain_dir(where, lambda d: (d / "b.yaml").symlink_to(where / "missing.yaml"))


@generator
def dir_with_fifo(where: Path) -> Path:
    return _chain_dir(where, lambda d: os.mkfifo(d / "b.yaml"))


@generator
def dir_with_device_link(where: Path) -> Path:
    return _chain_dir(where, lambda d: (d / "z.yml").symlink_to("/dev/zero"))


@generator
def dir_with_subdirectory_named_yaml(where: Path) -> Path:
    return _chain_dir(where, lambda d: (d / "sub.yaml").mkdir())


@generator
def dir_with_comment_only_file(where: Path) -> Path:
    return _chain_dir(where, lambda d: _write(d / "b.yaml", "# nothing here yet\n"))


@generator
def dir_without_chain_files(where: Path) -> Path:
    _write(where / "chain" / "notes.txt", "not a chain\n")
    return where / "chain"


@generator
def dir_with_duplicate_names(where: Path) -> Path:
    other = "roles:\n  hub: {arn: 'arn:aws:iam::222222222222:role/x'}\n"
    return _chain_dir(where, lambda d: _write(d / "b.yaml", other))


# -- names ---------------------------------------------------------------------------------


@generator
def filename_not_utf8(where: Path) -> Path:
    path = Path(os.fsdecode(os.fsencode(where) + b"/caf\xe9.yaml"))
    return _write(path, BASE)


@generator
def filename_with_escape(where: Path) -> Path:
    return _write(where / "a\x1b]0;pwned\x07\x1b[2J.yaml", BASE)


@generator
def filename_with_escape_invalid(where: Path) -> Path:
    return _write(where / "b\x1b[31m.yaml", BASE.replace("from: ci", "from: cj"))


@generator
def filename_with_newline(where: Path) -> Path:
    return _write(where / "ok: fake\nline.yaml", BASE.replace("from: ci", "from: cj"))


# -- large -----------------------------------------------------------------------------------


@generator
def deep_flow_10000(where: Path) -> Path:
    return _write(where / "chain.yaml", "principals: " + "[" * 10_000 + "]" * 10_000 + "\n")


@generator
def deep_flow_900(where: Path) -> Path:
    return _write(where / "chain.yaml", "principals: " + "[" * 900 + "]" * 900 + "\n")


@generator
def deep_block_1000(where: Path) -> Path:
    text = "".join("  " * i + f"k{i}:\n" for i in range(1000)) + "  " * 1000 + "v\n"
    return _write(where / "chain.yaml", text)


@generator
def deep_inline_policy_json(where: Path) -> Path:
    policy = "[" * 10_000 + "]" * 10_000
    return _write(where / "chain.yaml", _role(f"session_policy: {{inline: '{policy}'}}"))


@generator
def deep_query_10000(where: Path) -> Path:
    query = "(" * 10_000 + "a" + ")" * 10_000
    tasks = f"    tasks: [{{task: call, with: {{service: s3, operation: x, query: '{query}'}}}}]\n"
    return _write(where / "chain.yaml", BASE + tasks)


@generator
def role_path_20000_segments(where: Path) -> Path:
    return _write(where / "chain.yaml", BASE.replace("role/hub", "role/" + "p/" * 20_000 + "hub"))


@generator
def many_duplicate_keys(where: Path) -> Path:
    return _write(where / "chain.yaml", BASE + "".join("version: 1\n" for _ in range(100_000)))


def _bad_aliases(where: Path, count: int) -> Path:
    aliases = ", ".join(["*bad"] * count)
    text = BASE + (
        "role_sets:\n  s:\n    role_name: a\n    trusts: [hub]\n"
        f"    description: &bad not-an-account\n    accounts: [{aliases}]\n"
    )
    return _write(where / "chain.yaml", text)


@generator
def repeated_bad_alias(where: Path) -> Path:
    return _bad_aliases(where, 120_000)


@generator
def repeated_bad_alias_under_the_cap(where: Path) -> Path:
    return _bad_aliases(where, 49_000)


@generator
def alias_of_huge_name(where: Path) -> Path:
    name = "n" * 1_000_000
    text = BASE.replace("trusts: [ci]", f"trusts: [&n {name}" + ", *n" * 1000 + "]")
    return _write(where / "chain.yaml", text)


@generator
def unknown_trusts_10000(where: Path) -> Path:
    names = ", ".join(f"nobody{i}" for i in range(10_000))
    return _write(where / "chain.yaml", BASE.replace("trusts: [ci]", f"trusts: [{names}]"))


@generator
def unknown_trusts_in_10000_roles(where: Path) -> Path:
    roles = "".join(
        f"  r{i}:\n    arn: arn:aws:iam::111111111111:role/r{i}\n    trusts: [nobody{i}]\n"
        for i in range(10_000)
    )
    return _write(where / "chain.yaml", "version: 1\nprincipals:\n  ci: {}\nroles:\n" + roles)


@generator
def bad_roles_5000(where: Path) -> Path:
    roles = "".join(f"  r{i}:\n    arn: not-an-arn-{i}\n    trusts: [ci]\n" for i in range(5000))
    return _write(where / "chain.yaml", BASE.replace("roles:\n", "roles:\n" + roles))


def _roles_chain(count: int, role: Callable[[int], str], to: str) -> str:
    """A session principal, ``count`` roles (``role(i)`` gives each one's lines) and a job."""
    roles = "".join(f"  r{i}:\n{role(i)}" for i in range(count))
    principals = "version: 1\nprincipals:\n  ci: {kind: session}\nroles:\n"
    return principals + roles + f"jobs:\n  j: {{from: ci, to: '{to}'}}\n"


@generator
def honest_5000_roles(where: Path) -> Path:
    def role(i: int) -> str:
        return f"    arn: arn:aws:iam::{100000000000 + i:012d}:role/r{i}\n    trusts: [ci]\n"

    return _write(where / "chain.yaml", _roles_chain(5000, role, "r1*"))


@generator
def honest_merges_2000_roles(where: Path) -> Path:
    defaults = "<<: &d {trusts: [ci], max_session_duration: 2h, tags: {team: a, env: b}}"

    def role(i: int) -> str:
        merge = defaults if i == 0 else "<<: *d"
        return f"    {merge}\n    arn: arn:aws:iam::{100000000000 + i:012d}:role/r{i}\n"

    return _write(where / "chain.yaml", _roles_chain(2000, role, "r19*"))


@generator
def honest_role_set_2000_accounts(where: Path) -> Path:
    accounts = ", ".join(f"'{100000000000 + i:012d}'" for i in range(2000))
    text = (
        BASE.replace("to: hub", "to: s")
        + "    tasks: [s3.list_buckets]\n"
        + f"role_sets:\n  s: {{role_name: audit, trusts: [hub], accounts: [{accounts}]}}\n"
    )
    return _write(where / "chain.yaml", text)


@generator
def long_string_10mb(where: Path) -> Path:
    return _write(where / "chain.yaml", _role("description: " + "x" * 10_000_000))


@generator
def long_key_1mb(where: Path) -> Path:
    return _write(where / "chain.yaml", BASE.replace("  hub:\n", "  " + "k" * 1_000_000 + ":\n"))


@generator
def long_line_flow_mapping(where: Path) -> Path:
    tags = ", ".join(f"k{i}: v" for i in range(100_000))
    return _write(where / "chain.yaml", _role(f"tags: {{{tags}}}"))


@generator
def many_tasks_5000(where: Path) -> Path:
    tasks = "".join(f"      - {{task: s3.list_buckets, id: t{i}}}\n" for i in range(5000))
    return _write(where / "chain.yaml", BASE + "    tasks:\n" + tasks)


@generator
def random_bytes_1mb(where: Path) -> Path:
    import random

    data = random.Random(9).randbytes(1_000_000)
    return _write(where / "chain.yaml", data)


@generator
def nul_bytes_1mb(where: Path) -> Path:
    return _write(where / "chain.yaml", b"\0" * 1_000_000)


@generator
def numbers_5000_digits_everywhere(where: Path) -> Path:
    n = "7" * 5000
    role = f"trusts: [ci]\n    duration: {n}\n    max_session_duration: {n}"
    text = (
        BASE.replace("trusts: [ci]", role)
        + f"    runtime: {n}\n    concurrency: {n}\n"
        + f"settings: {{max_hops: {n}, assume_rate: {n}.5}}\n"
    )
    return _write(where / "chain.yaml", text)
