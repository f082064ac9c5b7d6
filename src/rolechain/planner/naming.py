"""Session names per hop: the job's template checked once, then rendered, checked and
(if too long) shortened for every hop (:mod:`rolechain.planner.session_names` holds the
template and shortening rules themselves)."""

from __future__ import annotations

from rolechain.model.schema import unknown_choice
from rolechain.model.targets import member_name
from rolechain.planner import rules as R
from rolechain.planner.base import STAND_IN_ACCOUNT, Draft, Node, PlannerBase, quote_chars
from rolechain.planner.plan import Note
from rolechain.planner.session_names import VARIABLES, NameRegistry, Template, invalid_chars


class SessionNaming(PlannerBase):
    """The RoleSessionName of each hop."""

    def session_template(self) -> Template:
        job = self.job
        if job.session_name is not None:
            text, where = job.session_name, self.locate("jobs", self.job_name, "session_name")
        else:
            text = self.model.settings.session_name
            where = self.locate("settings", "session_name")
        template = Template.parse(text)
        self.template_location = where
        for name in template.unknown_variables:
            self.violate(
                R.SESSION_NAME_INVALID,
                unknown_choice("session_name variable", name, VARIABLES),
                "use only the listed variables",
                location=where,
            )
        bad = template.literal_invalid_chars
        if bad:
            self.violate(
                R.SESSION_NAME_INVALID,
                f"session_name template {text!r} contains {quote_chars(bad)}, which a "
                "RoleSessionName may not contain (allowed: A-Z a-z 0-9 _+=,.@-)",
                "remove or replace those characters in the template",
                location=where,
            )
        return template

    def session_name(
        self,
        template: Template,
        draft: Draft,
        node: Node,
        registry: NameRegistry,
    ) -> str:
        values = {
            "job": self.job_name,
            "run_id": self.run_id,
            "principal": self.principal_name,
            "role": node.entity[1],
            "target": node.name,
            "account": node.account,
            "partition": node.partition,
            "depth": str(draft.depth),
        }
        if template.unknown_variables or template.literal_invalid_chars:
            return template.render({**values, **dict.fromkeys(template.unknown_variables, "")})
        label = f"{draft.caller} -> {draft.role}"
        checked = values
        if node.placeholder:
            checked = {
                **values,
                "account": STAND_IN_ACCOUNT,
                "target": member_name(node.entity[1], STAND_IN_ACCOUNT),
            }
        for var in template.variables:
            bad = invalid_chars(checked[var])
            if bad:
                self.violate(
                    R.SESSION_NAME_INVALID,
                    f"session_name variable {{{var}}} is {checked[var]!r}, which contains "
                    f"{quote_chars(bad)}; a RoleSessionName allows only A-Z a-z 0-9 _+=,.@-",
                    f"drop {{{var}}} from the template or give it a value without those characters",
                    hop=label,
                    location=self.template_location,
                    group=(R.SESSION_NAME_INVALID, var, checked[var]),
                )
                return template.render(values)
        full = template.render(checked)
        if len(full) < 2:
            self.violate(
                R.SESSION_NAME_TOO_SHORT,
                f"session name {full!r} is shorter than 2 characters",
                "add text or variables to the session_name template",
                hop=label,
                location=self.template_location,
                group=(R.SESSION_NAME_TOO_SHORT, full),
            )
            return full
        if node.placeholder:
            # Rendered per account once the accounts are known; show the template's shape.
            return template.render(values)
        final, other = registry.register(full)
        if other is not None:
            self.violate(
                R.SESSION_NAME_COLLISION,
                f"session names {full!r} and {other!r} both shorten to {final!r}",
                "make the session_name template shorter so names are not shortened",
                hop=label,
                location=self.template_location,
            )
        elif final != full:
            self.notes.add(
                Note(
                    kind="session-name-shortened",
                    message=f"session name {full!r} is {len(full)} characters; shortened to "
                    f"{final!r}",
                    hop=draft.id,
                    location=self.template_location,
                ),
                group=("session-name-shortened", node.entity),
            )
        return final
