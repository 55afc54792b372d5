"""Cartography, Flow Matrix matching and cross-exporter consolidation of sessions.

`load_cartography` and `load_flow_matrix` read and check the two YAML files before any
work starts; `match_sessions` gives the session_matches table and `matched_rules_column`
the sessions.matched_rules column; `consolidate_sessions` groups the per-exporter sessions
of a conversation into sessions_consolidated.
"""

from __future__ import annotations

from .address_sets import AddressSet
from .cartography import Cartography, DeclaredService, empty_cartography, load_cartography
from .consolidate import SESSIONS_CONSOLIDATED_SCHEMA, consolidate_sessions
from .flow_matrix import FlowMatrix, Rule, load_flow_matrix
from .match import SESSION_MATCHES_SCHEMA, match_sessions, matched_rules_column
from .services import Service

__all__ = [
    "SESSIONS_CONSOLIDATED_SCHEMA",
    "SESSION_MATCHES_SCHEMA",
    "AddressSet",
    "Cartography",
    "DeclaredService",
    "FlowMatrix",
    "Rule",
    "Service",
    "consolidate_sessions",
    "empty_cartography",
    "load_cartography",
    "load_flow_matrix",
    "match_sessions",
    "matched_rules_column",
]
