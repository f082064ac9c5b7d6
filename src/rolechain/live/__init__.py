"""Chain files against live IAM: ``verify`` (drift, hop by hop) and ``discover`` (IAM to a
chain file). Both assume hops exactly as a run does and read IAM through the error seam."""

from __future__ import annotations
