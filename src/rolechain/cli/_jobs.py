"""``--job``: a missing or unknown job is refused with the jobs of the chain listed, before
anything starts (a sandbox, a cluster, a store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rolechain.errors import UsageError


def _jobs_of(path: Any) -> list[str] | None:
    if not isinstance(path, Path):
        return None
    from rolechain.errors import RolechainError
    from rolechain.model.loader import load

    try:
        return list(load(path).model.jobs)
    except RolechainError:
        return None


class JobOption(click.Option):
    """A required ``--job`` whose 'missing' error lists the jobs of the chain at PATH."""

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        if self.value_is_missing(value) and not ctx.resilient_parsing:
            jobs = _jobs_of(ctx.params.get("path"))
            if jobs is not None:
                listed = ", ".join(jobs) or "(none defined)"
                raise click.MissingParameter(
                    message=f"Choose one of the jobs of {ctx.params['path']}: {listed}",
                    ctx=ctx,
                    param=self,
                )
        return super().process_value(ctx, value)


def check_job(chain: Any, job: str) -> None:
    """Refuse a job the chain does not have, listing its jobs (exit 2)."""
    if job in chain.model.jobs:
        return
    from rolechain.model.schema import unknown_choice

    raise UsageError(
        unknown_choice("job", job, list(chain.model.jobs)),
        hint="pick a job of the chain file with --job",
    )
