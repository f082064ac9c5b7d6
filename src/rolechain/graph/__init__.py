"""The trust graph of a chain file (networkx), and its mermaid/dot renderings."""

from __future__ import annotations

from rolechain.graph.build import MEMBER, PRINCIPAL, ROLE, TrustGraph, build_graph, trust_graph

__all__ = ["MEMBER", "PRINCIPAL", "ROLE", "TrustGraph", "build_graph", "trust_graph"]
