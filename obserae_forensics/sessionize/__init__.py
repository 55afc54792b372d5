"""sessionize: flow records -> per-exporter sessions, deterministically. Pure: no I/O, no clock.

`Sessionizer(policy).feed(batch)` replays FLOW_SCHEMA batches in arrival order (rules in
docs/sessions.md, applied as reference.py's docstring lists them) and returns the sessions
that became final, SESSIONS_SCHEMA, with their flow records; `finish()` ends the input.
`load_policy()` reads the seed's `sessions:` settings. The per-record loop is the numba
kernel in kernel.py; reference.py is the same rules in plain Python, the tests' oracle.
"""

from __future__ import annotations

from ..schema import FLOWS_SCHEMA
from .inference import infer_server
from .policy import SessionPolicy, load_policy, parse_duration, policy_settings
from .sessionizer import (
    ServiceLookup,
    SessionBatch,
    Sessionizer,
    empty_session_batch,
)

__all__ = [
    "FLOWS_SCHEMA",
    "ServiceLookup",
    "SessionBatch",
    "SessionPolicy",
    "Sessionizer",
    "empty_session_batch",
    "infer_server",
    "load_policy",
    "parse_duration",
    "policy_settings",
]
