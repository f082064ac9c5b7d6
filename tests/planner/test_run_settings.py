"""The planner types the chain file's settings once (RunSettings, on the plan); the plan's
JSON keeps its documented shape, and reads back to the same typed settings."""

from __future__ import annotations

from typing import Any

import pytest

from rolechain.errors import ChainFileError
from rolechain.model.loader import loads
from rolechain.planner import plan
from rolechain.planner.plan import Plan, RunSettings

from .chains import hub_chain, make_chain


@pytest.mark.parametrize(
    ("value", "ceiling"), [("auto", None), ("AUTO ", None), (10, 10.0), ("2.5", 2.5)]
)
def test_assume_rate_is_typed_by_the_planner(value: Any, ceiling: float | None) -> None:
    p = plan(make_chain(hub_chain(settings={"assume_rate": value})), "inv", run_id="r1")
    assert p.settings.assume_rate == ceiling
    assert p.to_dict()["settings"]["assume_rate"] == ("auto" if ceiling is None else ceiling)


@pytest.mark.parametrize("value", [0, -1, "fast", True, ".inf"])
def test_a_bad_assume_rate_is_refused_when_the_file_is_loaded(value: Any) -> None:
    text = f"version: 1\nsettings: {{assume_rate: {value}}}\n"
    with pytest.raises(ChainFileError, match="'auto'"):
        loads(text, file="x.yaml")


def test_the_jobs_retry_and_the_engine_are_typed_and_round_trip() -> None:
    chain = make_chain(
        hub_chain(
            job={"retry": {"attempts": 3, "max_wait": "1m"}},
            settings={"throttle_budget": "5m", "engine": {"kind": "dask", "workers": 2}},
        )
    )
    p = plan(chain, "inv", run_id="r1")
    assert p.settings == RunSettings(
        retry_attempts=3,
        retry_max_wait=60,
        throttle_budget=300,
        engine="dask",
        engine_workers=2,
    )
    data = p.to_dict()
    assert data["settings"] == {
        "assume_rate": "auto",
        "max_hops": 10,
        "retry_attempts": 3,
        "retry_initial_wait": 0.5,
        "retry_max_wait": 60,
        "throttle_budget": 300,
        "engine": "dask",
        "engine_workers": 2,
    }
    assert Plan.from_dict(data).settings == p.settings


def test_the_run_is_built_from_the_typed_settings() -> None:
    from rolechain.executor import RunContext, RunOptions

    chain = make_chain(
        hub_chain(job={"retry": {"attempts": 2}}, settings={"assume_rate": 7, "throttle_budget": 9})
    )
    context = RunContext(plan(chain, "inv", run_id="r1"), chain, RunOptions(check_identity=False))
    assert context.policy.attempts == 2
    assert context.budget.per_call == 9
    assert context.pacer.ceiling == 7.0  # type: ignore[attr-defined]
    assert context.engine.kind == "threads"
