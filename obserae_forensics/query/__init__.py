"""Analysis of a run's tables from Python: load, the Sessions page's filters, the drawer.

    from obserae_forensics import query
    run = query.load("out/fixture")
    scans = query.SessionQuery().last(3600).state("closed").close_reason("no_reply").apply(run)
    query.drawer(run, scans.session_id.iloc[0])

Plot helpers live in `obserae_forensics.query.plots` (imported on demand: matplotlib is
slow to import and a CLI filter has no use for it).
"""

from __future__ import annotations

from .drawer import SessionDrawer, drawer
from .filters import (
    SessionQuery,
    answers_alone,
    close_reason,
    entity,
    exporter,
    port,
    protocol,
    rule,
    service,
    state,
    time_window,
    unmatched,
    window_bounds,
)
from .run import Run, load, rematch, to_frame

__all__ = [
    "Run",
    "SessionDrawer",
    "SessionQuery",
    "answers_alone",
    "close_reason",
    "drawer",
    "entity",
    "exporter",
    "load",
    "port",
    "protocol",
    "rematch",
    "rule",
    "service",
    "state",
    "time_window",
    "to_frame",
    "unmatched",
    "window_bounds",
]
