"""rolechain.model.loader: files, directories, merging, env, locations, error mapping."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rolechain.errors import ChainFileError, Location
from rolechain.model.chain import Chain
from rolechain.model.loader import load, loads
from rolechain.model.schema import ChainFile
from rolechain.model.yamlsource import SourceMap

BASE = """\
version: 1
principals:
  ci:
    source: env
    kind: user
roles:
  hub:
    arn: arn:aws:iam::111111111111:role/hub
    trusts: [ci]
    duration: 1h
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ChainFileError) as caught:
        loads(text, file="c.yaml", env=env or {})
    return [str(p) for p in caught.value.problems]


# -- good files ------------------------------------------------------------------------


def test_load_one_file(tmp_path: Path) -> None:
    path = write(tmp_path / "chain.yaml", BASE)
    chain = load(path, env={})
    assert isinstance(chain, Chain)
    assert chain.files == (str(path),)
    assert chain.model.roles["hub"].duration == 3600
    assert chain.model.principals["ci"].kind == "user"


def test_locations_of_nested_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "chain.yaml", BASE)
    chain = load(str(path), env={})
    name = str(path)
    assert chain.locate("roles") == Location(name, 6, 1)
    assert chain.locate("roles", "hub") == Location(name, 7, 3)
    assert chain.locate("roles", "hub", "duration") == Location(name, 10, 5)
    assert chain.locate("roles", "hub", "trusts", 0) == Location(name, 9, 14)
    # a path below a scalar falls back to the nearest key that exists
    assert chain.locate("roles", "hub", "duration", "nothing") == Location(name, 10, 5)
    assert chain.locate("jobs") is None
    assert isinstance(chain.sources, SourceMap)
    assert chain.sources.value(("roles", "hub", "duration")) == Location(name, 10, 15)


def test_load_directory_merges_sorted_files(tmp_path: Path) -> None:
    write(
        tmp_path / "b-roles.yml",
        """\
        roles:
          spoke:
            arn: arn:aws:iam::222222222222:role/spoke
            trusts: [hub]
        settings:
          concurrency: 4
    """,
    )
    write(tmp_path / "a-base.yaml", BASE)
    write(
        tmp_path / "c-jobs.yaml",
        """\
        version: 1
        settings:
          max_hops: 3
        jobs:
          inv:
            from: ci
            to: spoke
    """,
    )
    write(tmp_path / "notes.txt", "not yaml: [")
    write(tmp_path / ".hidden.yaml", "not: [valid")
    write(tmp_path / "sub" / "ignored.yaml", "not: [valid")
    chain = load(tmp_path, env={})
    assert [Path(f).name for f in chain.files] == ["a-base.yaml", "b-roles.yml", "c-jobs.yaml"]
    assert sorted(chain.model.roles) == ["hub", "spoke"]
    assert chain.model.settings.concurrency == 4
    assert chain.model.settings.max_hops == 3
    assert chain.locate("roles", "spoke") == Location(str(tmp_path / "b-roles.yml"), 2, 3)
    assert chain.locate("jobs", "inv", "to") == Location(str(tmp_path / "c-jobs.yaml"), 7, 5)


def test_several_paths_and_the_same_file_twice(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", BASE)
    jobs = write(tmp_path / "jobs" / "jobs.yaml", "jobs:\n  inv:\n    from: ci\n    to: hub\n")
    chain = load([tmp_path, jobs, base], env={})
    assert chain.files == (str(base), str(jobs))
    assert list(chain.model.jobs) == ["inv"]


def test_account_ids_stay_strings() -> None:
    chain = loads(
        BASE
        + textwrap.dedent("""\
        role_sets:
          audit:
            role_name: audit
            trusts: [hub]
            accounts:
              - 012345678901
              - 123456789012
              - "023456701234"
              - 012345670123
        """),
        env={},
    )
    assert chain.model.role_sets["audit"].accounts == [
        "012345678901",
        "123456789012",
        "023456701234",
        "012345670123",
    ]


def test_yaml_1_1_booleans_and_dates_stay_strings() -> None:
    chain = loads(
        BASE + "    tags:\n      enabled: on\n      backup: no\n      since: 2024-01-01\n",
        env={},
    )
    assert chain.model.roles["hub"].tags == {"enabled": "on", "backup": "no", "since": "2024-01-01"}


def test_anchors_aliases_and_merge_keys() -> None:
    text = textwrap.dedent("""\
        version: 1
        principals:
          ci: {source: env}
        roles:
          hub: &defaults
            arn: arn:aws:iam::111111111111:role/hub
            trusts: [ci]
            duration: 30m
            tags: {team: platform}
          spoke:
            <<: *defaults
            arn: arn:aws:iam::222222222222:role/spoke
            trusts: &hubonly [hub]
          spoke2:
            <<: [*defaults]
            arn: arn:aws:iam::333333333333:role/spoke2
            trusts: *hubonly
    """)
    chain = loads(text, file="c.yaml", env={})
    spoke = chain.model.roles["spoke"]
    assert spoke.duration == 1800
    assert spoke.tags == {"team": "platform"}
    assert spoke.trusts == ["hub"]
    assert chain.model.roles["spoke2"].trusts == ["hub"]
    # own keys win over merged ones, and each is located where it was written
    assert chain.locate("roles", "spoke", "arn") == Location("c.yaml", 12, 5)
    assert chain.locate("roles", "spoke", "duration") == Location("c.yaml", 8, 5)


def test_env_interpolation_whole_part_default_and_escape() -> None:
    text = BASE + (
        "    external_id: ${env:EXT}\n"
        '    description: "team ${env:TEAM}, cost $${not a ref}, ${env:MISSING:-none}"\n'
        "jobs:\n  inv:\n    from: ci\n    to: hub\n    concurrency: ${env:CONC}\n"
    )
    chain = loads(text, env={"EXT": "ext-123", "TEAM": "platform", "CONC": "7"})
    hub = chain.model.roles["hub"]
    assert hub.external_id == "ext-123"
    assert hub.description == "team platform, cost ${not a ref}, none"
    assert chain.model.jobs["inv"].concurrency == 7
    assert isinstance(chain.sources, SourceMap)
    assert chain.sources.from_env[("roles", "hub", "external_id")] == ("ext-123", ("EXT",))


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLECHAIN_TEST_EXT", "from-os-environ")
    chain = loads(BASE + "    external_id: ${env:ROLECHAIN_TEST_EXT}\n")
    assert chain.model.roles["hub"].external_id == "from-os-environ"


def test_empty_sections_and_comment_only_file(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", BASE + "jobs:\nrole_sets: ~\n")
    write(tmp_path / "b.yaml", "# nothing here yet\n")
    chain = load(tmp_path, env={})
    assert chain.model.jobs == {}
    assert chain.model.role_sets == {}


# -- problems --------------------------------------------------------------------------


def test_secret_from_env_is_never_echoed() -> None:
    secret = "s3cret value!"
    found = problems_of(BASE + "    external_id: ${env:EXT}\n", env={"EXT": secret})
    assert found == [
        "c.yaml:11:18: roles.hub.external_id: the value from ${env:EXT} is not a valid "
        "external id (letters, digits and _+=,.@:/-)"
    ]
    too_long = "x" * 2000
    found = problems_of(BASE + "    external_id: ab${env:EXT}\n", env={"EXT": too_long})
    assert all(too_long not in line for line in found)
    assert found == [
        "c.yaml:11:18: roles.hub.external_id: is 2002 characters long; at most 1224 are allowed"
        " (the value from ${env:EXT})"
    ]


def test_malformed_env_references() -> None:
    found = problems_of(BASE + "    description: '${HOME} and ${env:'\n")
    assert found == [
        "c.yaml:11:18: roles.hub.description: '${' is not closed; write $${ for a literal '${'",
        "c.yaml:11:18: roles.hub.description: unsupported reference '${HOME}': write "
        "${env:NAME} for an environment variable, or $${ for a literal '${'",
    ]


def test_all_problems_at_once_across_passes() -> None:
    text = BASE + textwrap.dedent("""\
          spoke:
            arn: arn:aws:iam::222222222222:role/spoke
            trusts: [hubb]
            duraton: 1h
        jobs:
          inv:
            from: cj
            to: [spoke, nothing]
            concurrency: 0
    """)
    assert problems_of(text) == [
        "c.yaml:13:14: roles.spoke.trusts[0]: unknown principal, role or role set 'hubb'; "
        "valid: ci, hub, spoke; did you mean 'hub'? (trust a name defined in this chain, "
        "or an IAM ARN)",
        "c.yaml:14:5: unknown key 'duraton' in roles.spoke; valid keys: arn, description, "
        "duration, external_id, max_session_duration, mfa_serial, region, session_policy, "
        "source_identity, tags, transitive_tag_keys, trusts, verify; did you mean 'duration'?",
        "c.yaml:17:11: jobs.inv.from: unknown principal 'cj'; valid: ci",
        "c.yaml:18:17: jobs.inv.to[1]: unknown target 'nothing'; valid: hub, spoke",
        "c.yaml:19:18: jobs.inv.concurrency: 0 is below the minimum 1",
    ]


def test_an_invalid_role_does_not_make_its_references_dangle() -> None:
    text = BASE + textwrap.dedent("""\
          spoke:
            trusts: [hub]
          leaf:
            arn: arn:aws:iam::333333333333:role/leaf
            trusts: [spoke]
        jobs:
          inv: {from: ci, to: [spoke, leaf]}
    """)
    assert problems_of(text) == ["c.yaml:11:3: roles.spoke: missing required key 'arn'"]


def test_union_type_errors_say_what_is_accepted() -> None:
    text = BASE + "jobs:\n  inv:\n    from: ci\n    to: {hub: 1}\n"
    assert problems_of(text) == [
        "c.yaml:14:9: jobs.inv.to: expected a string or a list; found a mapping"
    ]


def test_wrong_section_types() -> None:
    assert problems_of("version: 1\nroles: [hub]\nsettings: 3\n") == [
        "c.yaml:2:8: roles: expected a mapping of names to roles; found a list",
        "c.yaml:3:11: settings: expected a mapping of setting names to values; found 3",
    ]


def test_mapping_key_that_is_not_a_name() -> None:
    assert problems_of("version: 1\nroles:\n  ? [a, b]\n  : {}\n") == [
        "c.yaml:3:5: roles: a key must be a name, not a list or mapping"
    ]


def test_recursive_alias_is_a_problem_not_a_hang() -> None:
    found = problems_of("version: 1\njobs: &j\n  inv: *j\n")
    assert found == ["c.yaml:2:7: jobs.inv: an alias refers to itself (recursive)"]


def test_second_document_is_a_problem() -> None:
    assert problems_of(BASE + "---\nversion: 1\n") == [
        "c.yaml:11:1: YAML syntax error: a second document ('---'); a chain file holds one "
        "document (split it into several files in a directory instead)"
    ]


def test_explicit_unknown_tag() -> None:
    found = problems_of(BASE + "    description: !vault secret/x\n")
    assert found == [
        "c.yaml:11:18: roles.hub.description: the tag !vault is not supported; a chain file "
        "holds strings, numbers, true/false, null, lists and mappings"
    ]


def test_missing_paths_and_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChainFileError) as caught:
        load([tmp_path / "nope.yaml", tmp_path / "empty"], env={})
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'empty'}: no chain files (*.yaml, *.yml) in directory",
        f"{tmp_path / 'nope.yaml'}: no such file or directory",
    ]
    with pytest.raises(ChainFileError, match="no chain files given"):
        load([], env={})


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("description: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ChainFileError, match="not UTF-8 text"):
        load(path, env={})


def test_version_must_agree_across_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", BASE)
    write(tmp_path / "b.yaml", "version: 2\n")
    with pytest.raises(ChainFileError) as caught:
        load(tmp_path, env={})
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'b.yaml'}:1:10: version: 2 disagrees with version 1 at "
        f"{tmp_path / 'a.yaml'}:1:10; all files of a chain use one version"
    ]


def test_duplicate_job_across_files(tmp_path: Path) -> None:
    job = "jobs:\n  inv:\n    from: ci\n    to: hub\n"
    write(tmp_path / "a.yaml", BASE + job)
    write(tmp_path / "b.yaml", job)
    with pytest.raises(ChainFileError) as caught:
        load(tmp_path, env={})
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'b.yaml'}:2:3: job 'inv' is also defined at {tmp_path / 'a.yaml'}:12:3 "
        "(rename one of them)"
    ]


def test_problem_keys_name_the_dotted_path() -> None:
    text = BASE.replace("duration: 1h", "duration: 5m") + "    duration: 1h\n"
    with pytest.raises(ChainFileError) as caught:
        loads(text, file="c.yaml", env={})
    (short, dup) = caught.value.problems
    assert dup.key == "roles.hub.duration"
    assert short.key == "roles.hub.duration"
    assert "duplicate key 'duration' in roles.hub (first at line 10)" in dup.message
    assert short.message == "roles.hub.duration: 5m (300 s) is below the minimum 15m (900 s)"


def test_every_duration_field_says_its_bounds_as_durations() -> None:
    # Which fields are durations is read from the schema (its Duration type), so a new
    # duration setting such as throttle_budget is worded like the others.
    with pytest.raises(ChainFileError) as caught:
        loads("settings:\n  throttle_budget: 0s\n  max_hops: 0\n", env={}, allow_empty=True)
    assert [p.message for p in caught.value.problems] == [
        "settings.throttle_budget: 0s (0 s) is below the minimum 1s (1 s)",
        "settings.max_hops: 0 is below the minimum 1",
    ]


def test_big_file_loads_with_one_source_entry_per_key() -> None:
    lines = ["version: 1", "principals:", "  ci: {source: env}", "roles:"]
    for i in range(1000):
        lines += [
            f"  r{i}:",
            f"    arn: arn:aws:iam::{100000000000 + i}:role/r{i}",
            "    trusts: [ci]",
            "    duration: 1h",
        ]
    chain = loads("\n".join(lines) + "\n", env={})
    assert len(chain.model.roles) == 1000
    # version, principals, ci, ci.source, roles; then per role: name, arn, trusts,
    # trusts[0], duration
    assert len(chain.sources) == 5 + 1000 * 5
    assert chain.locate("roles", "r999", "duration") == Location("<string>", 4 + 4 * 999 + 4, 5)


def test_public_api_exports_load(tmp_path: Path) -> None:
    import rolechain

    chain = rolechain.load(write(tmp_path / "c.yaml", BASE), env={})
    assert isinstance(chain, rolechain.Chain)


ORG = """\
role_sets:
  org:
    role_name: audit
    trusts: [hub]
    organization:
      via: ci
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "jobs:\n  inv: {from: ci, to: hub, regions: eu-west-1}\n",
            "c.yaml:12:37: jobs.inv.regions: expected a list or 'all'; found 'eu-west-1'",
        ),
        (
            "    tags: {'a b!': x}\n",
            "c.yaml:11:12: roles.hub.tags.a b!: 'a b!' is not a valid tag key (letters, digits, "
            "spaces and _.:/=+-@)",
        ),
        (
            "    external_id: x\n",
            "c.yaml:11:18: roles.hub.external_id: is 1 character long; at least 2 are allowed",
        ),
        (
            ORG + "      tags: {env: 5}\n",
            "c.yaml:17:19: role_sets.org.organization.tags.env: expected a string or a list; "
            "found 5",
        ),
        (
            ORG + "      ous: [ou-x]\n",
            "c.yaml:17:13: role_sets.org.organization.ous[0]: 'ou-x' is not an OU id "
            "('ou-xxxx-xxxxxxxx') or root id ('r-xxxx')",
        ),
        (
            "settings:\n  retry: {atempts: 3}\n",
            "c.yaml:12:11: unknown key 'atempts' in settings.retry; valid keys: attempts, "
            "initial_wait, max_wait; did you mean 'attempts'?",
        ),
        (
            "role_sets:\n  s2: just a string\n",
            "c.yaml:12:7: role_sets.s2: expected a mapping; found 'just a string'",
        ),
        (
            "    trusts: ci\n",
            "c.yaml:11:5: duplicate key 'trusts' in roles.hub (first at line 9); the second is "
            "ignored",
        ),
        (
            "jobs:\n  inv:\n    from: ci\n    to: hub\n    tasks:\n"
            "      - {task: call, wiht: {}}\n",
            "c.yaml:16:22: unknown key 'wiht' in jobs.inv.tasks[0]; valid keys: id, key, "
            "regions, rows, task, timeout, with; did you mean 'with'?",
        ),
        (
            "jobs:\n  inv:\n    from: ci\n    to: hub\n    tasks:\n"
            "      - {task: python, with: {function: 'm:f', args: 5}}\n",
            "c.yaml:16:54: jobs.inv.tasks[0].with: bad parameters for task 'python': args: "
            "expected a mapping",
        ),
        (
            "    mfa_serial: abc\n",
            "c.yaml:11:17: roles.hub.mfa_serial: 'abc' is not an MFA device ARN "
            "(arn:<partition>:iam::<account>:mfa/<name>) or a hardware serial",
        ),
    ],
)
def test_messages(extra: str, expected: str) -> None:
    assert problems_of(BASE + extra) == [expected]


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        (
            "jobs:\n  inv: {from: ci, to: hub, concurrency: '${env:C}'}\n",
            {"C": "0"},
            "c.yaml:12:41: jobs.inv.concurrency: the value from ${env:C} is below the minimum 1",
        ),
        (
            "jobs:\n  inv: {from: ci, to: hub, schedule: '${env:CRON}'}\n",
            {"CRON": "61 * * * *"},
            "c.yaml:12:38: jobs.inv.schedule: the value from ${env:CRON} is not a cron "
            "expression: bad minute; five fields, minute hour day month weekday, e.g. "
            "'0 3 * * *', or a macro: @yearly, @annually, @monthly, @weekly, @daily, "
            "@midnight, @hourly",
        ),
        (
            "    source_identity: ${env:SI}\n",
            {"SI": "aws:x"},
            "c.yaml:11:22: roles.hub.source_identity: the value from ${env:SI} starts with "
            "'aws:', a prefix AWS reserves",
        ),
    ],
)
def test_values_from_env_are_not_echoed(extra: str, env: dict[str, str], expected: str) -> None:
    found = problems_of(BASE + extra, env=env)
    assert found == [expected]
    for value in env.values():
        assert repr(value) not in found[0]


def _key_paths(data: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out: list[tuple[str | int, ...]] = []
    items = (
        data.items()
        if isinstance(data, dict)
        else enumerate(data)
        if isinstance(data, list)
        else ()
    )
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_key_paths(value, (*prefix, key)))
    return out


_names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
_accounts = st.from_regex(r"[0-9]{12}", fullmatch=True)


@settings(max_examples=40, deadline=None)
@given(
    roles=st.dictionaries(
        _names,
        st.fixed_dictionaries(
            {"account": _accounts, "duration": st.sampled_from([900, "15m", "1h", 3600])}
        ),
        min_size=1,
        max_size=6,
    ),
    accounts=st.lists(_accounts, min_size=1, max_size=5, unique=True),
    style=st.sampled_from([None, "'", '"']),
)
def test_dumped_chains_load_with_every_key_located(
    roles: dict[str, dict[str, object]], accounts: list[str], style: str | None
) -> None:
    data = {
        "version": 1,
        "principals": {"ci-principal": {"source": "env"}},
        "roles": {
            name: {
                "arn": f"arn:aws:iam::{spec['account']}:role/{name}",
                "trusts": ["ci-principal"],
                "duration": spec["duration"],
            }
            for name, spec in roles.items()
        },
        "role_sets": {"set": {"role_name": "audit", "accounts": accounts, "trusts": list(roles)}},
    }
    text = yaml.safe_dump(data, default_style=style, sort_keys=False)
    chain = loads(text, env={})
    assert chain.model == ChainFile.model_validate(data)
    for path in _key_paths(data):
        assert path in chain.sources, path


# -- hostile files (issue 9): refused before reading, located, bounded ---------------------


def test_files_that_are_not_regular_files_are_refused_unread(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    dangling = tmp_path / "gone.yaml"
    dangling.symlink_to(tmp_path / "nowhere.yaml")
    with pytest.raises(ChainFileError) as caught:
        load([fifo, zero, dangling], env={})
    assert sorted(p.message for p in caught.value.problems) == sorted(
        [
            f"{fifo}: a FIFO (named pipe), not a chain file; a chain file is a regular file",
            f"{zero}: a character device, not a chain file; a chain file is a regular file",
            f"{dangling}: a symlink to '{tmp_path / 'nowhere.yaml'}', which does not exist",
        ]
    )


def test_a_file_over_the_size_cap_is_refused_by_its_size(tmp_path: Path) -> None:
    from rolechain.model import loader

    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:
        handle.truncate(loader.MAX_FILE_BYTES + 1)
    with pytest.raises(ChainFileError) as caught:
        load(huge, env={})
    [problem] = caught.value.problems
    assert problem.message.startswith(f"{huge}: 67,108,865 bytes; a chain file is at most 64 MiB")


def test_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.encode() + b"    description: caf\xe9 au lait\n")
    with pytest.raises(ChainFileError) as caught:
        load(path, env={})
    [problem] = caught.value.problems
    assert problem.location == Location(str(path), 11, 21)
    assert "not UTF-8 text (invalid continuation byte at byte 172)" in problem.message


def test_dangling_symlink_in_a_directory_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path / "chain" / "a.yaml", BASE)
    (tmp_path / "chain" / "b.yaml").symlink_to(tmp_path / "moved.yaml")
    with pytest.raises(ChainFileError) as caught:
        load(tmp_path / "chain", env={})
    assert [p.message for p in caught.value.problems] == [
        f"{tmp_path / 'chain' / 'b.yaml'}: a symlink to '{tmp_path / 'moved.yaml'}', which does "
        "not exist; the chain would miss this file"
    ]


def test_unset_variables_as_placeholders() -> None:
    text = BASE.replace("    duration: 1h\n", "    external_id: ${env:EXT}\n") + (
        "role_sets:\n  audit:\n    role_name: audit\n    trusts: [hub]\n"
        "    accounts: ['${env:ACCOUNT}']\n"
        "settings:\n  region: ${env:REGION}\n"
    )
    assert problems_of(text) == [
        "c.yaml:10:18: roles.hub.external_id: environment variable EXT is not set: export "
        "EXT=... before running rolechain, or give a default with ${env:EXT:-value}",
        "c.yaml:15:16: role_sets.audit.accounts[0]: environment variable ACCOUNT is not set: "
        "export ACCOUNT=... before running rolechain, or give a default with "
        "${env:ACCOUNT:-value}",
        "c.yaml:17:11: settings.region: environment variable REGION is not set: export "
        "REGION=... before running rolechain, or give a default with ${env:REGION:-value}",
    ]
    chain = loads(text, file="c.yaml", env={}, unset_env="placeholder")
    assert chain.model.roles["hub"].external_id == "env-EXT"
    assert chain.model.role_sets["audit"].accounts == ["000000000000"]
    assert chain.model.settings.region == "us-east-1"
    assert [str(w) for w in chain.warnings] == [
        "c.yaml:10:18: roles.hub.external_id: environment variable EXT is not set; checked "
        "with the placeholder 'env-EXT' (set it, or pass --strict-env to make this an error)",
        "c.yaml:15:16: role_sets.audit.accounts[0]: environment variable ACCOUNT is not set; "
        "checked with the placeholder '000000000000' (set it, or pass --strict-env to make "
        "this an error)",
        "c.yaml:17:11: settings.region: environment variable REGION is not set; checked with "
        "the placeholder 'us-east-1' (set it, or pass --strict-env to make this an error)",
    ]


def test_a_placeholder_that_does_not_fit_says_so() -> None:
    text = BASE.replace("trusts: [ci]", "trusts: ['${env:WHO}']")
    with pytest.raises(ChainFileError) as caught:
        loads(text, file="c.yaml", env={}, unset_env="placeholder")
    [problem] = caught.value.problems
    assert problem.message.endswith("(${env:WHO} is not set: this was checked with a placeholder)")


def test_every_env_value_is_redacted_in_every_problem() -> None:
    secret = "s3cr3tV4lue!#"
    text = BASE + "jobs:\n  j:\n    from: ${env:WHO}\n    to: hub\n"
    [problem] = problems_of(text, env={"WHO": secret})
    assert secret not in problem
    assert problem.startswith(
        "c.yaml:13:11: jobs.j.from: unknown principal the value from ${env:WHO}"
    )


def test_problems_are_capped_and_counted() -> None:
    from rolechain.model import loader

    roles = "".join(f"  r{i}:\n    arn: bad-{i}\n" for i in range(loader.MAX_PROBLEMS + 5))
    with pytest.raises(ChainFileError) as caught:
        loads("version: 1\nprincipals: {ci: {}}\nroles:\n" + roles, file="c.yaml", env={})
    assert len(caught.value.problems) == loader.MAX_PROBLEMS
    assert caught.value.omitted == 5
    assert str(caught.value).startswith("1,005 problems in chain file:")
    assert str(caught.value).endswith("... and 5 more (fix these first)")


def test_problems_past_those_kept_are_still_counted() -> None:
    from rolechain.model import yamlsource

    count = yamlsource.KEEP_PROBLEMS + 7
    text = "version: 1\nprincipals: {ci: {}}\n" + "version: 1\n" * count
    with pytest.raises(ChainFileError) as caught:
        loads(text, file="c.yaml", env={})
    listed = caught.value.problems
    assert len(listed) + caught.value.omitted == count
    assert str(caught.value).startswith(f"{count:,} problems in chain file:")
    # The first ones in the file are listed.
    assert listed[0].location == Location("c.yaml", 3, 1)
    assert "duplicate key 'version' at the top level (first at line 1)" in listed[0].message
