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
from rolechain.planner.plan import HOP_SEPARATOR, Discovery, Note


class TargetSelection(PlannerBase):
    """Which targets the plan reaches."""

    def select_targets(self) -> list[str]:
        model, job = self.model, self.job
        where = self.locate("jobs", self.job_name, "to")
        job_targets, unmatched = expand_targets(model, job.targets, self.resolved)
        choices = sorted(model.roles) + sorted(model.role_sets)
        for selector in unmatched:
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
            picked, unmatched = expand_targets(model, self.requested, self.resolved)
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
