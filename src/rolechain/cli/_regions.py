"""Region options checked offline before anything starts (``all`` where a job allows it)."""

from __future__ import annotations

from typing import Any

import click

from rolechain.model.regions import region_problem


def check_regions(_ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback: refuse a region botocore's partition data does not name."""
    values = value if isinstance(value, tuple) else (value,)
    for region in values:
        if region is None or (region == "all" and param.multiple):
            continue
        problem = region_problem(region)
        if problem is not None:
            raise click.BadParameter(problem, param=param)
    return value
