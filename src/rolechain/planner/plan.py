"""A plan: the hops from a principal to every target of a job, as plain data.

A plan is a tree. Each :class:`Hop` is one AssumeRole call, identified by its path from the
principal (``ci>hub>audit@222222222222``); a hop shared by many targets appears once.
Everything here is frozen, hashable plain data that survives ``to_dict``/``from_dict`` and
pickling, so a unit of work (target, hop path, task spec) can travel to another process or
a Dask worker without live sessions or clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rolechain.errors import Location

PLAN_FORMAT_VERSION = 1

HOP_SEPARATOR = ">"

EngineKind = Literal["threads", "dask"]


@dataclass(frozen=True)
class RunSettings:
    """How a job's runs call AWS and where they run: the chain file's settings (and the
    job's ``retry``), validated by the schema and typed once, by the planner. Everything
    downstream (the retry policy, the throttle budget, the pacer, the engine) is built from
    these fields; nothing parses settings again.

    ``assume_rate``: the AssumeRole ceiling in calls per second per calling account (None:
    ``auto``, adaptive without a ceiling). ``throttle_budget``: seconds one call may go on
    being throttled. ``engine`` and ``engine_*``: ``settings.engine`` of the chain file.
    """

    max_hops: int = 10
    assume_rate: float | None = None
    retry_attempts: int = 5
    retry_initial_wait: float = 0.5
    retry_max_wait: float = 20
    throttle_budget: float = 120
    engine: EngineKind = "threads"
    engine_cluster: str | None = None
    engine_workers: int | None = None
    engine_batch_size: int | None = None
    engine_ship_credentials: bool = False
    engine_dashboard: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The plan JSON's ``settings``: ``assume_rate`` is ``auto`` or a number; the engine
        keys appear only when the chain file names an engine, with the options it sets."""
        data: dict[str, Any] = {
            "assume_rate": "auto" if self.assume_rate is None else self.assume_rate,
            "max_hops": self.max_hops,
            "retry_attempts": self.retry_attempts,
            "retry_initial_wait": self.retry_initial_wait,
            "retry_max_wait": self.retry_max_wait,
            "throttle_budget": self.throttle_budget,
        }
        engine = {
            "engine_batch_size": self.engine_batch_size,
            "engine_cluster": self.engine_cluster,
            "engine_ship_credentials": self.engine_ship_credentials or None,
            "engine_dashboard": self.engine_dashboard or None,
            "engine_workers": self.engine_workers,
        }
        if self.engine != "threads" or any(v is not None for v in engine.values()):
            data["engine"] = self.engine
            data.update({k: v for k, v in engine.items() if v is not None})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        """Inverse of :meth:`to_dict` (a plan read back from its JSON)."""
        values = dict(data)
        rate = values.pop("assume_rate", "auto")
        values["assume_rate"] = None if rate == "auto" else float(rate)
        values["engine_ship_credentials"] = bool(values.get("engine_ship_credentials"))
        values["engine_dashboard"] = bool(values.get("engine_dashboard"))
        return cls(**values)


@dataclass(frozen=True)
class Note:
    """Something the plan decided that a user should know (not an error)."""

    kind: str  # e.g. "duration-capped", "refresh-needed", "discovery-pending"
    message: str
    hop: str | None = None
    target: str | None = None
    location: Location | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.message}"


@dataclass(frozen=True)
class Hop:
    """One AssumeRole call: ``caller`` assumes ``role``."""

    id: str
    parent: str | None
    caller: str
    role: str
    role_arn: str
    account_id: str
    partition: str
    depth: int
    chained: bool
    duration_seconds: int
    duration_source: Literal["requested", "default", "capped"]
    session_name: str
    external_id: str | None = None
    mfa_serial: str | None = None
    source_identity: str | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    region: str | None = None
    location: Location | None = None

    @property
    def label(self) -> str:
        """``caller -> role``, as errors name a hop."""
        return f"{self.caller} -> {self.role}"

    def assume_role_params(self) -> dict[str, Any]:
        """Keyword arguments for ``sts.assume_role`` (TokenCode is added at run time)."""
        params: dict[str, Any] = {
            "RoleArn": self.role_arn,
            "RoleSessionName": self.session_name,
            "DurationSeconds": self.duration_seconds,
        }
        if self.external_id is not None:
            params["ExternalId"] = self.external_id
        if self.mfa_serial is not None:
            params["SerialNumber"] = self.mfa_serial
        if self.source_identity is not None:
            params["SourceIdentity"] = self.source_identity
        if self.policy is not None:
            params["Policy"] = self.policy
        if self.policy_arns:
            params["PolicyArns"] = [{"arn": arn} for arn in self.policy_arns]
        if self.tags:
            params["Tags"] = [{"Key": k, "Value": v} for k, v in self.tags]
        if self.transitive_tag_keys:
            params["TransitiveTagKeys"] = list(self.transitive_tag_keys)
        return params


@dataclass(frozen=True)
class Target:
    """One target of the job and the hops that reach it."""

    name: str
    role_arn: str
    account_id: str
    path: tuple[str, ...]  # hop ids, first hop first; path[-1] assumes this target
    lifetime_seconds: int  # the shortest session along the path
    needs_refresh: bool  # the job's runtime is longer than some session on the path
    regions: tuple[str, ...] = ()  # () means "all": resolved per account at run time

    @property
    def hop_id(self) -> str:
        return self.path[-1]


@dataclass(frozen=True)
class Discovery:
    """A role set whose accounts come from AWS Organizations at run time."""

    role_set: str
    via: str  # node whose credentials call Organizations
    via_hop: str | None  # hop id giving those credentials; None: the principal itself
    ous: tuple[str, ...] = ()
    tags: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[str, ...] = ()
    region: str = "us-east-1"


NO_MATCHING_ACCOUNTS = "NoMatchingAccounts"


@dataclass(frozen=True)
class NoMatch:
    """A glob over the members of an Organizations role set (in ``to`` or a requested
    target) that matched none of the accounts AWS Organizations listed at run time. It
    selects nothing, never "all": the run gives it one error record (``code``) saying so."""

    selector: str
    role_set: str
    message: str
    fix: str
    code: str = NO_MATCHING_ACCOUNTS


@dataclass(frozen=True)
class TaskRef:
    """A task of the job as plain data."""

    id: str
    task: str
    params: tuple[tuple[str, Any], ...] = ()
    regions: tuple[str, ...] | None = None  # None: the job's; ("all",): enabled regions
    timeout_seconds: int | None = None
    rows: str | None = None  # JMESPath giving the result's rows; None: the task's default
    key: tuple[str, ...] | None = None  # fields identifying a row; None: the task's default

    @property
    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Plan:
    """The plan of one job: a tree of hops and the targets at its leaves (or inner nodes)."""

    job: str
    principal: str
    principal_kind: Literal["user", "session"]
    run_id: str
    regions: tuple[str, ...]  # ("all",) means every enabled region
    hops: tuple[Hop, ...]  # parents before children, deterministic order
    targets: tuple[Target, ...]
    tasks: tuple[TaskRef, ...] = ()
    notes: tuple[Note, ...] = ()
    discoveries: tuple[Discovery, ...] = ()
    concurrency: int = 16
    runtime_seconds: int | None = None
    settings: RunSettings = field(default_factory=RunSettings)
    principal_source: Literal["default", "profile", "env"] = "default"
    principal_profile: str | None = None
    principal_arn: str | None = None
    region: str = "us-east-1"  # default region for STS calls and tasks
    unmatched: tuple[NoMatch, ...] = ()  # run time: globs that matched no listed account

    @property
    def assume_calls(self) -> int:
        """AssumeRole calls the plan needs: one per distinct hop."""
        return len(self.hops)

    def hop(self, hop_id: str) -> Hop:
        return self._hops_by_id[hop_id]

    @property
    def _hops_by_id(self) -> dict[str, Hop]:
        cache: dict[str, Hop] | None = self.__dict__.get("_hop_index")
        if cache is None:
            cache = {h.id: h for h in self.hops}
            object.__setattr__(self, "_hop_index", cache)
        return cache

    def path_hops(self, target: Target) -> list[Hop]:
        return [self.hop(h) for h in target.path]

    def children(self, hop_id: str | None) -> Iterator[Hop]:
        return (h for h in self.hops if h.parent == hop_id)

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape (``rolechain plan --format json``)."""
        data = asdict(self)
        data.pop("_hop_index", None)
        data["format_version"] = PLAN_FORMAT_VERSION
        data["assume_calls"] = self.assume_calls
        data["tasks"] = [
            {
                **asdict(t),
                "params": dict(t.params),
                "regions": t.regions,
                "key": list(t.key) if t.key is not None else None,
            }
            for t in self.tasks
        ]
        data["settings"] = self.settings.to_dict()
        for hop in data["hops"]:
            hop["tags"] = dict(hop["tags"])
        for d in data["discoveries"]:
            d["tags"] = {k: list(v) for k, v in d["tags"]}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`."""

        def loc(value: dict[str, Any] | None) -> Location | None:
            return Location(**value) if value else None

        hops = tuple(
            Hop(
                **{
                    **h,
                    "policy_arns": tuple(h["policy_arns"]),
                    "tags": tuple(h["tags"].items()),
                    "transitive_tag_keys": tuple(h["transitive_tag_keys"]),
                    "location": loc(h["location"]),
                }
            )
            for h in data["hops"]
        )
        targets = tuple(
            Target(**{**t, "path": tuple(t["path"]), "regions": tuple(t["regions"])})
            for t in data["targets"]
        )
        tasks = tuple(
            TaskRef(
                id=t["id"],
                task=t["task"],
                params=tuple(t["params"].items()),
                regions=tuple(t["regions"]) if t["regions"] is not None else None,
                timeout_seconds=t["timeout_seconds"],
                rows=t.get("rows"),
                key=tuple(t["key"]) if t.get("key") is not None else None,
            )
            for t in data["tasks"]
        )
        notes = tuple(Note(**{**n, "location": loc(n["location"])}) for n in data["notes"])
        discoveries = tuple(
            Discovery(
                **{
                    **d,
                    "ous": tuple(d["ous"]),
                    "exclude": tuple(d["exclude"]),
                    "tags": tuple((k, tuple(v)) for k, v in d["tags"].items()),
                }
            )
            for d in data["discoveries"]
        )
        return cls(
            job=data["job"],
            principal=data["principal"],
            principal_kind=data["principal_kind"],
            run_id=data["run_id"],
            regions=tuple(data["regions"]),
            hops=hops,
            targets=targets,
            tasks=tasks,
            notes=notes,
            discoveries=discoveries,
            concurrency=data["concurrency"],
            runtime_seconds=data["runtime_seconds"],
            settings=RunSettings.from_dict(data["settings"]),
            principal_source=data["principal_source"],
            principal_profile=data["principal_profile"],
            principal_arn=data["principal_arn"],
            region=data["region"],
            unmatched=tuple(NoMatch(**u) for u in data.get("unmatched", ())),
        )
