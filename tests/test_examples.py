"""Every example in chains/ loads, plans every job, and renders as a graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.model.loader import load
from rolechain.planner import plan

CHAINS = Path(__file__).resolve().parent.parent / "chains"
EXAMPLES = sorted(
    [p for p in CHAINS.glob("*.yaml")] + [p for p in CHAINS.iterdir() if p.is_dir()],
    key=lambda p: p.name,
)
ENV = {"VENDOR_EXTERNAL_ID": "vendor-7f3a9c"}


@pytest.fixture(autouse=True)
def _example_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def test_there_are_at_least_five_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "org-inventory.yaml",
        "three-hop-deploy.yaml",
        "vendor-access.yaml",
        "platform",
        "demo.yaml",
    } <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_and_plans_every_job(example: Path) -> None:
    chain = load(example)
    assert chain.model.jobs, f"{example.name} declares no job"
    for job in chain.model.jobs:
        planned = plan(chain, job)
        assert planned.targets
        assert planned.assume_calls == len({h.id for h in planned.hops})
        json.dumps(planned.to_dict())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_renders_every_example(example: Path, fmt: str) -> None:
    chain = load(example)
    job = sorted(chain.model.jobs)[0]
    result = CliRunner().invoke(cli, ["graph", str(example), "--job", job, "--format", fmt])
    assert result.exit_code == 0, result.output
    assert result.output.strip()
    first = result.output.splitlines()[0]
    assert first.startswith("flowchart" if fmt == "mermaid" else "digraph")


def test_validate_accepts_every_example() -> None:
    result = CliRunner().invoke(cli, ["validate", *map(str, EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok: ") == len(EXAMPLES)


def test_three_hop_deploy_is_chained_all_the_way_and_capped() -> None:
    planned = plan(load(CHAINS / "three-hop-deploy.yaml"), "deploy")
    (target,) = planned.targets
    hops = planned.path_hops(target)
    assert [h.role for h in hops] == ["deployer", "prod-gateway", "prod-deploy"]
    assert all(h.chained for h in hops)
    assert [h.duration_seconds for h in hops] == [3600, 3600, 2700]
    assert [h.duration_source for h in hops] == ["capped", "capped", "requested"]
    assert target.needs_refresh


def test_org_inventory_shares_the_hub() -> None:
    planned = plan(load(CHAINS / "org-inventory.yaml"), "legacy-buckets")
    assert [t.name for t in planned.targets] == [
        "legacy@555555555555",
        "legacy@666666666666",
        "legacy@777777777777",
    ]
    assert planned.assume_calls == 4
    hub = planned.hops[0]
    assert hub.role == "security-hub"
    assert hub.chained
    assert (hub.duration_seconds, hub.duration_source) == (3600, "capped")
    assert all(planned.path_hops(t)[0] is hub for t in planned.targets)


def test_vendor_access_carries_source_identity_and_external_id() -> None:
    planned = plan(load(CHAINS / "vendor-access.yaml"), "audit")
    broker = planned.hops[0]
    assert (broker.role, broker.chained, broker.duration_seconds) == ("vendor-broker", False, 7200)
    assert broker.source_identity == "vendor-ops-alice"
    customers = [h for h in planned.hops if h.parent == broker.id]
    assert {h.role for h in customers} == {"customer-a", "customer-b"}
    assert all(h.external_id == ENV["VENDOR_EXTERNAL_ID"] for h in customers)
    customer_a = next(h for h in customers if h.role == "customer-a")
    assert customer_a.policy is not None
    assert len(customer_a.policy) <= 2048
    assert customer_a.policy_arns == ("arn:aws:iam::aws:policy/ReadOnlyAccess",)
