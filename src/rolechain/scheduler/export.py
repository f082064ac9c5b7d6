"""``rolechain schedule export``: the same schedules as cron, systemd, Kubernetes and
GitHub Actions definitions. Pure: text in, text out.

Every target runs ``rolechain run PATH --job J --store STORE``; each key is mapped where
the target has an equivalent, and what it cannot express is written into the output as a
comment and returned as a warning. The mapping table is in docs/scheduling.md.

One rule for text that comes from a chain file or the command line: it is either refused
(:meth:`ExportOptions.check`; names and ``description`` by the model's validators) or
written through the target's own quoting: comments are one escaped line
(:func:`one_line`), crontab commands are shell-quoted with ``%`` escaped, systemd words
are C-quoted with ``%%`` and ``$$``, YAML is written by PyYAML's emitter, and ``${{`` in
a GitHub workflow is written as an expression that yields it.
"""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from rolechain.cron import expand
from rolechain.errors import UsageError
from rolechain.locations import is_url
from rolechain.model.chain import Chain
from rolechain.model.durations import format_duration
from rolechain.scheduler.policy import ScheduleSpec

TARGETS = ("cron", "systemd", "kubernetes", "github-actions")
_DOW = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")

# Stopping. 'rolechain run' bounds itself: at the job's runtime (its default --deadline) it
# stops and writes its summary; on SIGTERM/SIGINT it gives tasks in flight --grace, then
# writes everything. The outer scheduler's own limits leave it room to do both: its
# timeout is runtime + grace + STOP_MARGIN (so it never fires before the run has stopped
# itself), and its SIGTERM-to-SIGKILL window is grace + STOP_MARGIN.
GRACE = 10  # seconds: the --grace the generated commands pass
GITHUB_GRACE = 5  # GitHub sends SIGINT, then SIGTERM 7.5 s later, then kills: fit in it
STOP_MARGIN = 60  # seconds to start up, write the last records and the summary

DEFAULT_STORE = "/var/lib/rolechain/runs.db"
IMAGE_UID = 10001  # the Containerfile's user; the pod runs as it and owns the store volume
CONFIG_DIR = "/etc/rolechain"  # where the CronJob mounts the chain file's ConfigMap
STORE_CLAIM = "rolechain-store"
STORE_SECRET = "rolechain-store"  # noqa: S105 (the Secret object holding PGPASSWORD)
SERVICE_ACCOUNT = "rolechain"


def outer_timeout(spec: ScheduleSpec, grace: int = GRACE) -> int | None:
    """The outer scheduler's time limit for a run of ``spec`` (None: no runtime, none)."""
    return spec.runtime + grace + STOP_MARGIN if spec.runtime else None


def one_line(text: str) -> str:
    """``text`` as one line of printable text for a comment or header: a backslash is
    doubled, and every control, line-separator or other non-printable character (newline,
    ``\\r``, NEL, U+2028, U+2029...) is written as its ``\\x``/``\\u`` escape, so nothing a
    chain file says can end a comment and start a line of code."""
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == " " or char.isprintable():
            out.append(char)
        else:
            out.append(_escape(char))
    return "".join(out)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _safe(text: str) -> str:
    """``text`` as is when it is one printable line already (built from :func:`quoted`
    parts and checked options), else escaped."""
    return text if _unprintable(text) is None else one_line(text)


def _unprintable(text: str) -> str | None:
    """The first character of ``text`` that is not printable (a space is), or None."""
    return next((c for c in text if c != " " and not c.isprintable()), None)


@dataclass(frozen=True)
class ExportOptions:
    """What the generated files name on the machine, cluster or repository they run in."""

    path: str  # the chain file as the generated command names it
    store: str = DEFAULT_STORE
    rolechain: str = "rolechain"  # the executable (cron and systemd: an absolute path)
    image: str = "rolechain"  # the CLI's default: deploy.default_image(), as 'make image' tags
    lock_dir: str = "/var/lock"
    install: str = "."  # github-actions: what 'pip install' installs rolechain from
    chain_is_dir: bool = False  # kubernetes: PATH is a directory of chain files

    @property
    def store_is_url(self) -> bool:
        """A PostgreSQL store (a URL), not a SQLite file."""
        return is_url(self.store)

    def check(self, target: str) -> None:
        """Refuse what no target can write safely, naming the option: control or
        line-separator characters in any value, and (cron, systemd) a relative executable
        or store."""
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, str):
                continue
            bad = _unprintable(value)
            if bad is not None or not value:
                what = f"contains U+{ord(bad):04X}" if bad is not None else "is empty"
                raise UsageError(
                    f"{_OPTION[item.name]} {one_line(value)!r} {what}: an exported file "
                    "cannot name it safely",
                    hint="rename the file or directory, or pass another value",
                )
        url = self.store_is_url
        if url:
            from rolechain.errors import url_has_password

            if url_has_password(self.store):
                raise UsageError(
                    "--store: the URL holds a password, which an exported file would keep in "
                    "clear text",
                    hint="leave it out of the URL: PGPASSWORD or ~/.pgpass where the job runs, "
                    "or a ${env:NAME} reference in the URL",
                )
        if target in ("cron", "systemd"):
            for name in ("rolechain", "store", "lock_dir", "path"):
                if name == "store" and url:
                    continue
                if not getattr(self, name).startswith("/"):
                    raise UsageError(
                        f"{_OPTION[name]} {one_line(getattr(self, name))!r} is not an absolute "
                        f"path: {target} starts the job from a fixed directory and PATH",
                        hint="give the absolute path it has where the file is installed",
                    )
        if target == "systemd" and not _systemd_executable(self.rolechain):
            raise UsageError(
                f"--command {self.rolechain!r}: systemd refuses an executable path with quotes, "
                "a backslash, or '.', '..' or empty components",
                hint="install rolechain at a plain path (a venv or pipx) and pass that",
            )
        if target == "kubernetes" and not url and not self.store.startswith("/"):
            raise UsageError(
                f"--store {one_line(self.store)!r} is not an absolute path in the container",
                hint=f"for example --store {DEFAULT_STORE}",
            )


def _systemd_executable(path: str) -> bool:
    """Whether systemd runs ``path`` as ``ExecStart=``'s executable: normalized, and free
    of the characters its ``string_is_safe`` refuses (quotes, backslash, DEL)."""
    import posixpath

    return not any(c in "\"'\\\x7f" for c in path) and posixpath.normpath(path) == path


_OPTION = {
    "path": "the chain file path",
    "store": "--store",
    "rolechain": "--command",
    "image": "--image",
    "lock_dir": "the lock directory",
    "install": "--install",
}


def quoted(text: str) -> str:
    """``text`` in double quotes on one line (see :func:`one_line`), for comments."""
    return '"' + one_line(text).replace('"', '\\"') + '"'


@dataclass
class Exported:
    """The files written for one target, and the warnings."""

    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Job:
    spec: ScheduleSpec
    description: str | None
    region: str
    principal: str
    principal_arn: str | None
    principal_kind: str
    unsupported: list[str] = field(default_factory=list)

    def cannot(self, target: str, what: str) -> None:
        self.unsupported.append(what)

    def comments(self, prefix: str = "# ") -> list[str]:
        return [f"{prefix}not expressible here: {one_line(u)}" for u in self.unsupported]


def _jobs(chain: Chain, specs: dict[str, ScheduleSpec]) -> list[_Job]:
    out = []
    for name, spec in specs.items():
        job = chain.model.jobs[name]
        principal = chain.model.principals[job.from_]
        out.append(
            _Job(
                spec,
                job.description,
                (job.regions[0] if isinstance(job.regions, list) and job.regions else None)
                or principal.region
                or chain.model.settings.region,
                job.from_,
                principal.arn,
                principal.kind,
            )
        )
    return out


def _run_argv(opts: ExportOptions, job: str, grace: int = GRACE) -> list[str]:
    return [opts.rolechain, "run", opts.path, "--job", job, "--store", opts.store,
            "--grace", f"{grace}s", "--quiet", "--format", "jsonl", "--output",
            "/dev/null"]  # fmt: skip


def _common_gaps(job: _Job, target: str, *, retry: bool = True, alerts: bool = True) -> None:
    spec = job.spec
    if retry and spec.retry_times:
        job.cannot(target, f"retry_failed (after {format_duration(spec.retry_after)}, "
                   f"{spec.retry_times}x): re-running only the failed targets")  # fmt: skip
    if alerts:
        named = [e for e in ("failure", "success", "recovery") if spec.alert(e) is not None]
        if named:
            job.cannot(target, "alerts " + ", ".join(f"on_{e}" for e in named))


def _header(
    source: str, job: _Job, target: str, expects: Sequence[str], comment: str = "#"
) -> list[str]:
    """The comment block on top of a job's file: where it comes from, its schedule, the
    paths it expects where it runs, and the job's description, each one escaped line."""
    spec = job.spec
    lines = [
        f"{comment} rolechain job {spec.job!r} from {quoted(source)}",
        f"{comment} generated by 'rolechain schedule export --to {target}'; edit the chain "
        "file and export again",
        f"{comment} schedule: {spec.cron.expression!r} in {spec.cron.timezone}; overlap: "
        f"{spec.overlap}; catch_up: {spec.catch_up} within "
        f"{format_duration(spec.starting_deadline)}"
        + (
            f"; jitter: {format_duration(spec.jitter)} (this job +{spec.offset}s)"
            if spec.jitter
            else "; starts on time (no jitter)"
        ),
    ]
    if spec.runtime:
        grace = GITHUB_GRACE if target == "github-actions" else GRACE
        lines.append(
            f"{comment} runtime: {format_duration(spec.runtime)}: 'rolechain run' stops itself "
            f"then; this file's time limit is that + {grace}s grace + "
            f"{format_duration(STOP_MARGIN)}, so the run always writes its summary"
        )
    lines += [f"{comment} expects: {_safe(e)}" for e in expects]
    if job.description:
        lines.append(f"{comment} description: {quoted(job.description)}")
    return lines


def _warnings(target: str, jobs: Iterable[_Job]) -> list[str]:
    return [
        f"{target}: job {j.spec.job}: cannot express {u} (written as a comment)"
        for j in jobs
        for u in j.unsupported
    ]


# -- cron ---------------------------------------------------------------------------------


def _cron_command(words: Sequence[str]) -> str:
    """Words as one crontab command: shell-quoted, ``%`` (cron's newline) escaped, and
    ``#`` outside the quotes as ``\\#``, so no tool that reads crontabs takes a space and
    a ``#`` for the start of a comment."""
    return " ".join(_cron_word(w) for w in words).replace("%", "\\%")


def _cron_word(word: str) -> str:
    if "#" not in word:
        return shlex.quote(word)
    return "\\#".join(shlex.quote(part) if part else "" for part in word.split("#"))


def to_cron(chain: Chain, specs: dict[str, ScheduleSpec], opts: ExportOptions) -> Exported:
    """One crontab with a line per job, each wrapped in ``flock``."""
    opts.check("cron")
    jobs = _jobs(chain, specs)
    out = ["# crontab for rolechain, generated by 'rolechain schedule export --to cron'",
           "SHELL=/bin/sh", ""]  # fmt: skip
    for job in jobs:
        spec = job.spec
        _common_gaps(job, "cron")
        if spec.catch_up != "none":
            job.cannot("cron", f"catch_up: {spec.catch_up} (cron does not run fires missed "
                       "while the machine was down)")  # fmt: skip
        lock = f"{opts.lock_dir}/rolechain-{spec.job}.lock"
        if spec.overlap == "queue":
            flock = ["flock", "-w", str(spec.starting_deadline), lock]
        else:
            if spec.overlap == "replace":
                job.cannot("cron", "overlap: replace (flock -n skips the new run instead)")
            flock = ["flock", "-n", lock]
        limit = outer_timeout(spec)
        timeout = ["timeout", f"--kill-after={GRACE + STOP_MARGIN}s", f"{limit}s"] if limit else []
        command = _cron_command([*flock, *timeout, *_run_argv(opts, spec.job)])
        if spec.offset:
            command = f"sleep {spec.offset} && {command}"
        job.cannot("cron", f"keep (runs: {spec.keep_runs}, days: {spec.keep_days}): "
                   "only 'rolechain schedule' prunes the store")  # fmt: skip
        expects = [
            f"rolechain at {quoted(opts.rolechain)}; the chain file at {quoted(opts.path)}",
            f"the store at {quoted(opts.store)} and the lock directory {quoted(opts.lock_dir)}"
            ", writable by this crontab's user; flock (util-linux) and timeout (coreutils)",
        ]
        out += _header(opts.path, job, "cron", expects)
        out += job.comments()
        if spec.cron.timezone != "UTC":
            out.append("# CRON_TZ is read by cronie (RHEL, Fedora, Arch); Debian's cron uses "
                       "the system time zone")  # fmt: skip
            out.append(f"CRON_TZ={spec.cron.timezone}")
        else:
            out.append("CRON_TZ=UTC")
        out.append(f"{expand(spec.cron.expression)} {command}")
        out.append("")
    result = Exported({"rolechain.crontab": "\n".join(out)})
    result.warnings = _warnings("cron", jobs)
    for job in jobs:
        if job.spec.cron.timezone != "UTC":
            result.warnings.append(
                f"cron: job {job.spec.job}: CRON_TZ={job.spec.cron.timezone} is honoured by "
                "cronie, not by Debian's cron"
            )
    return result


# -- systemd ------------------------------------------------------------------------------


def _ranges(values: Sequence[int], fmt: Callable[[int], str] = "{:02d}".format) -> str:
    """``01..05,07`` from sorted values."""
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{fmt(values[i])}..{fmt(values[j])}")
        else:
            parts.extend(fmt(v) for v in values[i : j + 1])
        i = j + 1
    return ",".join(parts)


def _calendar_field(values: set[int], full: range) -> str:
    ordered = sorted(values)
    if ordered == list(full):
        return "*"
    if len(ordered) > 2:
        step = ordered[1] - ordered[0]
        progression = all(b - a == step for a, b in itertools.pairwise(ordered))
        if progression and ordered[-1] + step > full[-1]:
            return f"{ordered[0]:02d}/{step}"
    return _ranges(ordered)


def calendar_specs(expression: str, timezone: str) -> list[str]:
    """systemd ``OnCalendar=`` values equivalent to a cron expression (two when day of
    month and day of week are both restricted: cron ORs them, systemd ANDs)."""
    from cronsim import CronSim

    five = expand(expression)
    fields = five.split(" ")
    sim = CronSim(five, datetime(2000, 1, 1))
    minute = _calendar_field(set(sim.minutes), range(60))
    hour = _calendar_field(set(sim.hours), range(24))
    months = _calendar_field(set(sim.months), range(1, 13))
    days = _calendar_field(set(sim.days), range(1, 32))
    weekdays = sorted({int(d) % 7 for d in sim.weekdays if isinstance(d, int)})
    dow = "" if len(weekdays) == 7 else _ranges(weekdays, _DOW.__getitem__) + " "
    zone = "" if timezone == "UTC" else f" {timezone}"
    if timezone == "UTC":
        zone = " UTC"
    time = f"{hour}:{minute}:00"
    dom_star, dow_star = fields[2].startswith("*"), fields[4].startswith("*")
    if not dom_star and not dow_star:
        return [f"*-{months}-{days} {time}{zone}", f"{dow}*-{months}-* {time}{zone}"]
    if dom_star and not dow_star:
        # cron ANDs them here: '*/2' in day of month still counts as restricting it.
        return [f"{dow}*-{months}-{days} {time}{zone}"]
    return [f"*-{months}-{days} {time}{zone}"]


def to_systemd(chain: Chain, specs: dict[str, ScheduleSpec], opts: ExportOptions) -> Exported:
    """A ``.service`` (Type=oneshot) and a ``.timer`` per job."""
    opts.check("systemd")
    jobs = _jobs(chain, specs)
    result = Exported()
    for job in jobs:
        spec = job.spec
        unit = f"rolechain-{spec.job}"
        _common_gaps(job, "systemd")
        if spec.overlap != "skip":
            job.cannot("systemd", f"overlap: {spec.overlap} (a timer never starts a service "
                       "that is still running: the fire is skipped)")  # fmt: skip
        if spec.catch_up == "all":
            job.cannot("systemd", "catch_up: all (Persistent= runs one missed fire, the latest)")
        if spec.catch_up != "none":
            job.cannot("systemd", f"starting_deadline: {format_duration(spec.starting_deadline)} "
                       "(Persistent= catches up however long ago the fire was missed)")  # fmt: skip
        if spec.jitter:
            job.cannot("systemd", f"jitter offset {spec.offset}s (RandomizedDelaySec= with "
                       "FixedRandomDelay= picks its own delay within the jitter)")  # fmt: skip
        job.cannot("systemd", f"keep (runs: {spec.keep_runs}, days: {spec.keep_days}): "
                   "only 'rolechain schedule' prunes the store")  # fmt: skip
        expects = [
            f"rolechain at {quoted(opts.rolechain)} (--command); the chain file at "
            f"{quoted(opts.path)}",
            f"the store at {quoted(opts.store)}, writable by the service's user (root unless "
            "you add User=); install both units in /etc/systemd/system and enable the .timer",
        ]
        head = _header(opts.path, job, "systemd", expects)
        service = [*head, *job.comments(), "",
                   "[Unit]", f"Description={_systemd_text(f'rolechain job {spec.job}')}",
                   "Wants=network-online.target", "After=network-online.target", "",
                   "[Service]", "Type=oneshot",
                   "ExecStart=" + _systemd_command(_run_argv(opts, spec.job)),
                   "KillSignal=SIGTERM", f"TimeoutStopSec={GRACE + STOP_MARGIN}s"]  # fmt: skip
        limit = outer_timeout(spec)
        service.append(f"TimeoutStartSec={limit}s" if limit else "TimeoutStartSec=infinity")
        timer = [*head, "", "[Unit]",
                 f"Description={_systemd_text(f'Schedule of rolechain job {spec.job}')}", "",
                 "[Timer]"]  # fmt: skip
        timer += [
            f"OnCalendar={c}" for c in calendar_specs(spec.cron.expression, spec.cron.timezone)
        ]
        timer.append(f"Persistent={'false' if spec.catch_up == 'none' else 'true'}")
        if spec.jitter:  # like cron, a timer starts on time unless the job asks for jitter
            timer.append(f"RandomizedDelaySec={spec.jitter}s")
            timer.append("FixedRandomDelay=true")
        timer.append("AccuracySec=1s")
        timer += [f"Unit={unit}.service", "", "[Install]", "WantedBy=timers.target"]
        result.files[f"{unit}.service"] = "\n".join(service) + "\n"
        result.files[f"{unit}.timer"] = "\n".join(timer) + "\n"
    result.warnings = _warnings("systemd", jobs)
    return result


_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_./:@=,+-]+")


def _systemd_text(text: str) -> str:
    """A free-text value (``Description=``): one line, specifiers (``%``) escaped."""
    return one_line(text).replace("%", "%%")


def _systemd_command(argv: Sequence[str]) -> str:
    """``ExecStart=``'s value: systemd expands ``$VAR`` in the arguments, not in the
    executable's path."""
    return " ".join(_systemd_quote(w, variables=i > 0) for i, w in enumerate(argv))


def _systemd_quote(word: str, *, variables: bool = True) -> str:
    """One word of ``ExecStart=``, as systemd splits it: in double quotes with C escapes
    (``\\"``, ``\\\\``, ``\\xNN`` for anything not printable), ``%%`` for a specifier's
    ``%`` and, in an argument, ``$$`` for a variable's ``$``."""
    if _SYSTEMD_PLAIN.fullmatch(word):
        return word
    out: list[str] = []
    for char in word:
        if char in "\\\"'":
            out.append("\\" + char)
        elif char == "%":
            out.append("%%")
        elif char == "$" and variables:
            out.append("$$")
        elif char == ";" or not char.isprintable():
            out.append(_escape(char))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


# -- Kubernetes ---------------------------------------------------------------------------


def _yaml(data: object) -> str:
    """One YAML document from PyYAML's emitter, which quotes and escapes every string."""
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=200))


def _yaml_documents(head: Sequence[str], documents: Sequence[object]) -> str:
    """A comment block, then the documents separated by ``---``."""
    return "\n".join(head) + "\n" + "---\n".join(_yaml(d) for d in documents)


_K8S_NAME = re.compile(r"[^a-z0-9-]+")


def _k8s_names(jobs: Iterable[str]) -> dict[str, str]:
    """A CronJob name per job: DNS-1123 (lower case, digits, '-', starting and ending with
    one of the first two), at most 52 characters (the controller adds 11 to each Job's);
    a short hash tells apart jobs that would otherwise get the same name."""
    import hashlib

    names: dict[str, str] = {}
    for job in jobs:
        name = _K8S_NAME.sub("-", f"rolechain-{job}".lower())[:52].rstrip("-")
        if name in names.values() or name != f"rolechain-{job}":
            digest = hashlib.sha256(job.encode()).hexdigest()[:6]
            name = f"{name[:45].rstrip('-')}-{digest}"
        names[job] = name
    return names


def _k8s_common(opts: ExportOptions) -> list[dict[str, object]]:
    """The objects every CronJob uses: its service account and (a SQLite store) the
    store's claim."""
    labels = {"app.kubernetes.io/name": "rolechain"}
    account: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": SERVICE_ACCOUNT, "labels": labels},
    }
    if opts.store_is_url:
        return [account]
    return [
        account,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": STORE_CLAIM, "labels": labels},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]


def _postgres_pod(template: dict[str, Any]) -> None:
    """A pod whose store is PostgreSQL: no store volume, and the password (if any) from
    the Secret STORE_SECRET as PGPASSWORD, which libpq reads."""
    pod = template["template"]["spec"]
    (container,) = pod["containers"]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "store"]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "store"]
    container["envFrom"] = [{"secretRef": {"name": STORE_SECRET, "optional": True}}]


def to_kubernetes(chain: Chain, specs: dict[str, ScheduleSpec], opts: ExportOptions) -> Exported:
    """A ``batch/v1`` CronJob per job (timeZone needs Kubernetes 1.27+), and one file with
    the service account and the store's PersistentVolumeClaim they share."""
    opts.check("kubernetes")
    jobs = _jobs(chain, specs)
    result = Exported()
    if opts.chain_is_dir:
        chain_arg, configmap = CONFIG_DIR, f"--from-file={shlex.quote(opts.path)}"
    else:
        chain_arg = f"{CONFIG_DIR}/chain.yaml"
        configmap = f"--from-file=chain.yaml={shlex.quote(opts.path)}"
    store_dir = opts.store.rsplit("/", 1)[0] or "/"
    expects = [
        f"the image {quoted(opts.image)} (--image): build it with 'make image' in rolechain's "
        "source (Containerfile; rolechain is not on PyPI) and push it where the cluster pulls",
        f"the ConfigMap rolechain-chains with the chain file: kubectl create configmap "
        f"rolechain-chains {configmap}",
        (
            f"the ServiceAccount {SERVICE_ACCOUNT} (rolechain-common.yaml) and the PostgreSQL "
            f"store {quoted(opts.store)}; its password, if the server asks for one, in the "
            f"Secret {STORE_SECRET}: kubectl create secret generic {STORE_SECRET} "
            "--from-literal=PGPASSWORD=..."
            if opts.store_is_url
            else f"the ServiceAccount {SERVICE_ACCOUNT} and the PersistentVolumeClaim "
            f"{STORE_CLAIM} (rolechain-common.yaml), mounted at {quoted(store_dir)} for the "
            f"store {quoted(opts.store)}"
        ),
        f"credentials: give the '{SERVICE_ACCOUNT}' service account an IAM role (IRSA or EKS "
        "Pod Identity) that is the chain's principal",
    ]
    if "/" not in opts.image.split(":", 1)[0]:
        result.warnings.append(
            f"kubernetes: the image {opts.image!r} names no registry: build it with 'make "
            "image', push it to a registry the cluster pulls from, and export with --image"
        )
    names = _k8s_names(j.spec.job for j in jobs)
    for job in jobs:
        spec = job.spec
        name = names[spec.job]
        _common_gaps(job, "kubernetes")
        policy = {"skip": "Forbid", "queue": "Allow", "replace": "Replace"}[spec.overlap]
        if spec.overlap == "queue":
            job.cannot("kubernetes", "overlap: queue (Allow runs the new job next to the old "
                       "one instead of after it)")  # fmt: skip
        if spec.catch_up == "all":
            job.cannot("kubernetes", "catch_up: all (a CronJob starts one missed job, the "
                       "latest)")  # fmt: skip
        if spec.catch_up == "none":
            job.cannot("kubernetes", "catch_up: none (startingDeadlineSeconds is set to 10, "
                       "the controller's smallest reliable window)")  # fmt: skip
        if spec.jitter:
            job.cannot("kubernetes", f"jitter: {format_duration(spec.jitter)} (this job's "
                       f"offset is {spec.offset}s)")  # fmt: skip
        job.cannot("kubernetes", f"keep.days: {spec.keep_days} (only the run counts are "
                   "limited; the store is pruned only by 'rolechain schedule')")  # fmt: skip
        deadline = 10 if spec.catch_up == "none" else spec.starting_deadline
        labels = {"app.kubernetes.io/name": "rolechain", "app.kubernetes.io/instance": name}
        annotations = {"rolechain.dev/job": spec.job}
        argv = _run_argv(ExportOptions(chain_arg, opts.store), spec.job)[1:]
        template: dict[str, object] = {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "terminationGracePeriodSeconds": GRACE + STOP_MARGIN,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": IMAGE_UID,
                                        "runAsGroup": IMAGE_UID, "fsGroup": IMAGE_UID},
                    "containers": [{
                        "name": "rolechain",
                        "image": opts.image,
                        "args": argv,
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [
                            {"name": "chains", "mountPath": CONFIG_DIR, "readOnly": True},
                            {"name": "store", "mountPath": store_dir},
                        ],
                    }],
                    "volumes": [
                        {"name": "chains", "configMap": {"name": "rolechain-chains"}},
                        {"name": "store", "persistentVolumeClaim": {"claimName": STORE_CLAIM}},
                    ],
                },
            },
        }  # fmt: skip
        if opts.store_is_url:
            _postgres_pod(template)
        limit = outer_timeout(spec)
        if limit:
            template["activeDeadlineSeconds"] = limit
        cronjob = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {
                "schedule": expand(spec.cron.expression),
                "timeZone": spec.cron.timezone,
                "concurrencyPolicy": policy,
                "startingDeadlineSeconds": deadline,
                "successfulJobsHistoryLimit": min(spec.keep_runs, 100),
                "failedJobsHistoryLimit": min(spec.keep_runs, 100),
                "jobTemplate": {"spec": template},
            },
        }
        head = [*_header(opts.path, job, "kubernetes", expects), *job.comments()]
        result.files[f"{name}.yaml"] = _yaml_documents(head, [cronjob])
    common_head = [
        "# rolechain: the service account every exported CronJob uses"
        if opts.store_is_url
        else "# rolechain: the service account and the store's volume claim every exported "
        "CronJob uses",
        "# generated by 'rolechain schedule export --to kubernetes'; apply it before the "
        "CronJobs (kubectl apply -f .)",
        *(f"# expects: {_safe(e)}" for e in expects[1:]),
    ]
    result.files["rolechain-common.yaml"] = _yaml_documents(common_head, _k8s_common(opts))
    result.warnings = _warnings("kubernetes", jobs) + result.warnings
    return result


# -- GitHub Actions -----------------------------------------------------------------------


def _role_to_assume(job: _Job) -> str | None:
    arn = job.principal_arn or ""
    parts = arn.split(":")
    if len(parts) >= 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    if len(parts) >= 6 and parts[2] == "iam" and parts[5].startswith("role/"):
        return arn
    return None


_EXPRESSION = "${{"


def _no_expressions(value: object) -> object:
    """``value`` with every ``${{`` in its strings written as ``${{ '${{' }}``, an expression
    that yields the two characters: GitHub evaluates ``${{ ... }}`` in every string of a
    workflow, so text from a chain file or the command line must not open one."""
    if isinstance(value, str):
        return value.replace(_EXPRESSION, "${{ '${{' }}")
    if isinstance(value, dict):
        return {_no_expressions(k): _no_expressions(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_expressions(v) for v in value]
    return value


def to_github_actions(
    chain: Chain, specs: dict[str, ScheduleSpec], opts: ExportOptions
) -> Exported:
    """A workflow per job: ``on.schedule`` cron, OIDC credentials as the principal.

    ``opts.path`` is the chain file relative to the repository's root (the workflow runs
    in a checkout); ``opts.install`` is what pip installs rolechain from (rolechain is not
    on PyPI: ``.`` when the repository is rolechain's source, else a wheel in it).
    """
    opts.check("github-actions")
    if opts.path.startswith("/") or opts.path.split("/", 1)[0] == "..":
        raise UsageError(
            f"the chain file {one_line(opts.path)!r} is not a path inside the repository",
            hint="GitHub Actions runs the workflow in a checkout: keep the chain file in the "
            "repository and name it from the repository's root",
        )
    jobs = _jobs(chain, specs)
    result = Exported()
    install = f"python -m pip install {shlex.quote(opts.install)}"
    for job in jobs:
        spec = job.spec
        _common_gaps(job, "github-actions")
        if spec.cron.timezone != "UTC":
            job.cannot("github-actions", f"timezone: {spec.cron.timezone} (GitHub runs "
                       "schedules in UTC; the cron fields are used as UTC)")  # fmt: skip
        if spec.catch_up != "none":
            job.cannot("github-actions", f"catch_up: {spec.catch_up} (GitHub does not run "
                       "missed schedules)")  # fmt: skip
        if spec.overlap == "skip":
            job.cannot("github-actions", "overlap: skip (a concurrency group queues one "
                       "pending run instead)")  # fmt: skip
        first_two = spec.cron.next_fires(datetime(2026, 1, 5, tzinfo=UTC), 2)
        if len(first_two) == 2 and (first_two[1] - first_two[0]).total_seconds() < 300:
            job.cannot("github-actions", "fires less than 5 minutes apart (GitHub runs "
                       "schedules at most every 5 minutes)")  # fmt: skip
        role = _role_to_assume(job)
        if role is None:
            result.warnings.append(
                f"github-actions: job {spec.job}: principal {job.principal!r} has no role ARN; "
                "set the repository variable ROLECHAIN_ROLE_ARN to the role GitHub's OIDC "
                "provider may assume"
            )
        if job.principal_kind != "session":
            result.warnings.append(
                f"github-actions: job {spec.job}: principal {job.principal!r} is 'kind: user' "
                "but OIDC credentials are a role session; declare kind: session so the plan "
                "caps chained hops at one hour"
            )
        steps: list[dict[str, object]] = [
            {"uses": "actions/checkout@v4"},
            {"uses": "actions/setup-python@v5", "with": {"python-version": "3.12"}},
            {"name": "Install rolechain (not on PyPI: from this repository)", "run": install},
            {
                "name": f"Credentials of principal {job.principal}",
                "uses": "aws-actions/configure-aws-credentials@v4",
                "with": {
                    "role-to-assume": role or "",
                    "aws-region": job.region,
                    "role-session-name": f"rolechain-{spec.job}"[:64],
                },
            },
        ]
        if spec.offset:
            steps.append({"name": f"Jitter ({spec.offset}s of {spec.jitter}s)",
                          "run": f"sleep {spec.offset}"})  # fmt: skip
        argv = _run_argv(ExportOptions(opts.path, "runs.db", "rolechain"), spec.job, GITHUB_GRACE)
        steps.append({"run": " ".join(shlex.quote(w) for w in argv)})
        steps.append({
            "if": "always()",
            "uses": "actions/upload-artifact@v4",
            "with": {"name": f"rolechain-{spec.job}-runs", "path": "runs.db",
                     "retention-days": min(spec.keep_days, 90)},
        })  # fmt: skip
        run_job: dict[str, object] = {"runs-on": "ubuntu-latest", "steps": steps}
        limit = outer_timeout(spec, GITHUB_GRACE)
        if limit:
            run_job["timeout-minutes"] = -(-limit // 60)
        workflow: Any = _no_expressions({
            "name": f"rolechain {spec.job}",
            "on": {"schedule": [{"cron": expand(spec.cron.expression)}], "workflow_dispatch": {}},
            "permissions": {"id-token": "write", "contents": "read"},
            "concurrency": {
                "group": f"rolechain-{spec.job}",
                "cancel-in-progress": spec.overlap == "replace",
            },
            "jobs": {"run": run_job},
        })  # fmt: skip
        if role is None:  # the one expression of ours, added after the text was neutralised
            credentials = workflow["jobs"]["run"]["steps"][3]["with"]
            credentials["role-to-assume"] = "${{ vars.ROLECHAIN_ROLE_ARN }}"
        expects = [
            f"this file in .github/workflows/ of the repository that holds the chain file at "
            f"{quoted(opts.path)} (from the repository's root)",
            f"rolechain installed by {quoted(install)}: rolechain is not on PyPI, so this "
            "installs it from the checkout ('.': the repository is rolechain's source) or "
            "from a wheel committed to it (--install)",
        ]
        head = [*_header(opts.path, job, "github-actions", expects), *job.comments()]
        result.files[f"rolechain-{spec.job}.yml"] = _yaml_documents(head, [workflow])
    result.warnings = _warnings("github-actions", jobs) + result.warnings
    return result


EXPORTERS = {
    "cron": to_cron,
    "systemd": to_systemd,
    "kubernetes": to_kubernetes,
    "github-actions": to_github_actions,
}


def export(
    chain: Chain, specs: dict[str, ScheduleSpec], target: str, opts: ExportOptions
) -> Exported:
    """The files of ``target`` for ``specs``. Raises UsageError for an option no file can
    name safely (see :meth:`ExportOptions.check`)."""
    if target not in EXPORTERS:
        raise ValueError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    return EXPORTERS[target](chain, specs, opts)
