"""Target selection: the job's targets (narrowed to those the caller asked for), and the
discovery an organization role set needs before its members are known."""

from __future__ import annotations

from collections.abc import Sequence

from rolechain.model.schema import unknown_choice
from rolechain.model.targets import (
    DISCOVERED,
    expand_targets,
    is_glob,
    member_name,
    no_match_message,
    set_members,
    split_member,
)
from rolechain.planner import rules as R
from rolechain.planner.base import PlannerBase, abbreviate
from rolechain.planner.plan import HOP_SEPARATOR, Discovery, NoMatch, Note


class TargetSelection(PlannerBase):
    """Which targets the plan reaches."""

    def select_targets(self) -> list[str]:
        model, job = self.model, self.job
        where = self.locate("jobs", self.job_name, "to")
        job_targets, unmatched = expand_targets(model, job.targets, self.resolved)
        choices = sorted(model.roles) + sorted(model.role_sets)
        for selector in unmatched:
            if self.listed_org_glob(selector):
                if self.requested is None:  # else only what was requested is run
                    self.no_match(selector)
                continue
            if self.empty_set(selector):
                continue
            self.violate(
                R.UNKNOWN_TARGET,
                no_match_message(model, selector, self.resolved)
                or unknown_choice("target", selector, choices),
                "name a role, a role set, a member 'set@account' or a glob that matches one",
                location=where,
                target=selector,
            )
        chosen = job_targets
        if self.requested is not None:
            picked, unmatched = self.expand_requested(self.requested, job_targets)
            for selector in unmatched:
                if is_glob(selector):
                    message = (
                        f"glob {selector!r} matches no target of job {self.job_name} "
                        f"(its targets: {abbreviate(job_targets, 20)})"
                    )
                else:
                    message = unknown_choice("target", selector, job_targets[:20])
                self.violate(
                    R.UNKNOWN_TARGET,
                    message,
                    f"choose among the targets of job {self.job_name}",
                    target=selector,
                )
            in_job = set(job_targets)
            open_sets = {t[: -len("@" + DISCOVERED)] for t in job_targets if t.endswith("@*")}
            chosen = []
            for name in picked:
                member = split_member(name)
                if name in in_job or (member is not None and member[0] in open_sets):
                    chosen.append(name)
                else:
                    self.violate(
                        R.TARGET_NOT_IN_JOB,
                        f"{name} is not a target of job {self.job_name} "
                        f"(its targets: {abbreviate(job_targets)})",
                        f"pick a target of the job, or add {name} to jobs.{self.job_name}.to",
                        location=where,
                        target=name,
                    )
        return chosen

    def expand_requested(
        self, requested: Sequence[str], job_targets: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """The requested selectors expanded (in order, without duplicates) and those that
        matched nothing. A glob over an Organizations set whose accounts are listed now
        picks the job's targets among them; picking none is a :class:`NoMatch`."""
        in_job = set(job_targets)
        picked: dict[str, None] = {}
        unmatched: list[str] = []
        for selector in requested:
            names, missed = expand_targets(self.model, [selector], self.resolved)
            if self.listed_org_glob(selector):
                names = [name for name in names if name in in_job]
                if not names:
                    self.no_match(selector, job_targets)
            else:
                unmatched.extend(missed)
            picked.update(dict.fromkeys(names))
        return list(picked), unmatched

    def listed_org_glob(self, selector: str) -> bool:
        """Whether ``selector`` is a glob over the members of an Organizations role set
        whose accounts AWS Organizations has listed (at run time, after discovery)."""
        member = split_member(selector)
        if member is None or not is_glob(member[1]) or self.resolved is None:
            return False
        spec = self.model.role_sets.get(member[0])
        return spec is not None and spec.organization is not None and member[0] in self.resolved

    def no_match(self, selector: str, job_targets: Sequence[str] | None = None) -> None:
        """``selector``, a glob over an Organizations set's listed accounts, matched none
        of them (or of ``job_targets`` among them, for a requested target): a
        :class:`NoMatch` (an error record at run time), never "all"."""
        set_name = selector.rpartition("@")[0]
        members = set_members(self.model, set_name, self.resolved)
        in_job = [name for name in job_targets or () if name.startswith(set_name + "@")]
        if job_targets is not None and len(in_job) < len(members):
            message = (
                f"glob {selector!r} matches none of the {len(in_job)} targets of job "
                f"{self.job_name} among the accounts AWS Organizations listed for role set "
                f"{set_name}: {abbreviate(in_job, 20) or 'none'}"
            )
        else:
            message = no_match_message(self.model, selector, self.resolved) or selector
        spec = self.model.role_sets[set_name]
        assert spec.organization is not None
        self.unmatched[selector] = NoMatch(
            selector=selector,
            role_set=set_name,
            message=message,
            fix=f"match one of those accounts; if an account is missing, check role_sets."
            f"{set_name}.organization (ous, tags, exclude) and that it is ACTIVE in AWS "
            f"Organizations (listed through {spec.organization.via})",
        )

    def empty_set(self, selector: str) -> bool:
        """True if ``selector`` names a role set that has no members (resolved to none)."""
        member = split_member(selector)
        if selector in self.model.role_sets:
            return True
        if member is None or not is_glob(member[1]) or member[0] not in self.model.role_sets:
            return False
        # A glob over a set with members that matches none of them is an error, never "all".
        return not set_members(self.model, member[0], self.resolved)

    def discovery(self, set_name: str, via_nodes: Sequence[str]) -> Discovery:
        spec = self.model.role_sets[set_name]
        org = spec.organization
        assert org is not None
        via_hop = HOP_SEPARATOR.join(via_nodes) if len(via_nodes) > 1 else None
        self.notes.add(
            Note(
                kind="discovery-pending",
                message=f"accounts of role set {set_name} are discovered at run time from AWS "
                f"Organizations through {org.via}; the plan shows them as "
                f"{member_name(set_name, DISCOVERED)}",
                hop=via_hop,
                target=member_name(set_name, DISCOVERED),
                location=self.locate("role_sets", set_name, "organization"),
            )
        )
        return Discovery(
            role_set=set_name,
            via=org.via,
            via_hop=via_hop,
            ous=tuple(org.ous),
            tags=tuple(
                (k, (v,) if isinstance(v, str) else tuple(v)) for k, v in sorted(org.tags.items())
            ),
            exclude=tuple(sorted(set(spec.exclude) | set(org.exclude))),
            region=org.region,
        )
