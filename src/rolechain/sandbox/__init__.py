"""The offline sandbox: a local AWS (moto) that enforces the role rules moto does not.

``sandbox(chain)`` serves moto on 127.0.0.1 behind middleware that enforces trust policies,
ExternalId, the one-hour chaining cap, MaxSessionDuration, the root-user refusal, parameter
patterns and limits, and credential expiry, with AWS's error codes and messages; it
provisions the chain's accounts, roles and principals, and can compress time and inject
faults. moto is imported only when a sandbox starts (``pip install 'rolechain[sandbox]'``).
"""

from __future__ import annotations

from rolechain.sandbox.faults import Faults
from rolechain.sandbox.server import SandboxError, SandboxInfo, sandbox

__all__ = ["Faults", "SandboxError", "SandboxInfo", "sandbox"]
