"""The session drawer: everything about one session, as the Sessions page shows on a click.

The drawer gathers, for one session id: its row (counters, timing, inferred server side with
method and confidence, state and close reason), its Flow Matrix matches, the fragments of its
conversation, the consolidated conversation it belongs to, the late sessions linked to it,
and the raw flow records behind it with their provenance (file, frame, offset, record index),
so the bytes on disk can be found again.

The surprising thing: a session's fragments are not just the rows sharing its
`conversation_id`. That id links the fragments one sessionizer run cut by `hard_timeout` or
eviction; a conversation that went on across two captures, or a late record's session,
lives in another run or under another id. When the Run carries recombine's fragments table
the drawer follows it, and falls back to `conversation_id` within the run only without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError

if TYPE_CHECKING:
    from .run import Run

FRAGMENT_COLUMNS = ("fragment_index", "session_id", "link_reason", "joined_fragment", "gap_s")
HTML_FLOW_ROWS = 50


@dataclass(frozen=True, repr=False)
class SessionDrawer:
    """One session and everything behind it; empty frames where there is nothing."""

    session: pd.Series
    matches: pd.DataFrame  # session_matches rows (+ description when the Flow Matrix is known)
    fragments: pd.DataFrame  # sessions of its conversation, in order; just itself if unsplit
    conversation: pd.Series | None  # recombine's row for the whole conversation
    consolidated: pd.DataFrame  # sessions_consolidated rows that include this session
    related: pd.DataFrame  # late sessions that follow it, or the session it follows
    flows: pd.DataFrame  # the raw flow records, in arrival order

    def summary(self) -> str:
        """The drawer's header as text: endpoints, server side, counters, timing, rules."""
        row = self.session
        client_is_a = (row["client_ip"], row["client_port"]) == (row["ip_a"], row["port_a"])
        # Python ints: the sampled estimate below multiplies them, and numpy's uint64
        # product wrapped past 2**64 (a damaged counter at 1:100 read as 8.4 KB: an audit)
        up, down = ("ab", "ba") if client_is_a else ("ba", "ab")
        up_bytes, down_bytes = int(row[f"{up}_bytes"]), int(row[f"{down}_bytes"])
        up_packets, down_packets = int(row[f"{up}_packets"]), int(row[f"{down}_packets"])
        duration = (row["last_seen_at"] - row["opened_at"]).total_seconds()
        state = row["state"] + (
            f" ({row['close_reason']})" if _present(row["close_reason"]) else ""
        )
        lines = [
            f"session {row['session_id']}",
            f"client {_endpoint(row['client_ip'], row['client_port'])} -> server "
            f"{_endpoint(row['server_ip'], row['server_port'])} {row['protocol']}"
            f" (server side by {row['role_method']}, confidence {row['role_confidence']:.2f})",
            f"duration {duration:g}s, {human_bytes(up_bytes)} client->server "
            f"({up_packets} packets), {human_bytes(down_bytes)} server->client "
            f"({down_packets} packets)",
            f"opened {row['opened_at']}, last seen {row['last_seen_at']}, "
            f"closed {row['closed_at'] if _present(row['closed_at']) else '-'}; state {state}",
            f"exporter {row['exporter']} domain {row['exporter_domain']}; "
            f"{row['flow_count']} flow records ({row['late_records']} late)",
        ]
        rate = int(row["sampling_rate"])
        if rate > 1 and not bool(row["counters_scaled"]):
            # the counters are the sampled packets: quoted as the traffic, they were 30,000
            # times too small on a 1-in-30000 exporter (an audit)
            lines.insert(
                3,
                f"sampled 1 in {rate}: the counters above are what the exporter "
                f"counted; the traffic was about {human_bytes(up_bytes * rate)} "
                f"client->server ({up_packets * rate} packets), "
                f"{human_bytes(down_bytes * rate)} server->client "
                f"({down_packets * rate} packets)",
            )
        elif rate > 1:
            lines.insert(
                3,
                f"sampled 1 in {rate}: the counters above are already scaled by "
                "the source (estimates of the traffic)",
            )
        rules = list(self.matches["rule"]) if len(self.matches) else []
        lines.append("matched rules: " + (", ".join(rules) if rules else "none"))
        if len(self.fragments) > 1:
            place = int(
                np.flatnonzero(self.fragments["session_id"].to_numpy() == row["session_id"])[0]
            )
            # numbered from 0, as fragment_index and the seed's session.split are ("fragment
            # 5 of 7" named the one whose fragment_index is 4: a review)
            lines.append(
                f"fragment {place} (fragments 0 to {len(self.fragments) - 1}) of conversation "
                f"{self._conversation_id()}"
            )
        if len(self.consolidated):
            first = self.consolidated.iloc[0]
            coarsest = int(first.get("max_sampling_rate", 1) or 1)
            estimate = (
                # a low coherence there is sampling's, not the devices' (a review)
                f" (an exporter sampled 1 in {coarsest}: it compares an estimate)"
                if coarsest > 1 and int(first["sampler_count"]) > 1
                else ""
            )
            lines.append(
                f"seen by {first['sampler_count']} exporter(s), coherence "
                f"{first['coherence_pct']:.0f}%{estimate}"
            )
        return "\n".join(lines)

    def _conversation_id(self) -> str:
        if self.conversation is not None:
            return str(self.conversation["conversation_id"])
        return str(self.session["conversation_id"])

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return (
            f"<SessionDrawer {self.session['session_id']}: {len(self.matches)} matches, "
            f"{len(self.fragments)} fragments, {len(self.flows)} flow records>"
        )

    def _repr_html_(self) -> str:
        parts = [f"<pre>{escape(self.summary())}</pre>"]
        for title, frame in (
            ("rule matches", self.matches),
            ("fragments", self.fragments),
            ("related late sessions", self.related),
        ):
            if len(frame):
                parts.append(f"<h4>{title}</h4>{frame.to_html(index=False)}")
        shown = self.flows.head(HTML_FLOW_ROWS)
        more = len(self.flows) - len(shown)
        parts.append(f"<h4>flow records ({len(self.flows)})</h4>{shown.to_html(index=False)}")
        if more:
            parts.append(f"<p>… {more} more in <code>.flows</code></p>")
        return "\n".join(parts)


def drawer(run: Run, session_id: str) -> SessionDrawer:
    """Everything about `session_id`; UsageError when no loaded run has it."""
    sessions = run.sessions
    hits = np.flatnonzero((sessions["session_id"] == session_id).to_numpy(dtype=bool))
    if len(hits) == 0:
        raise UsageError(f"no session {session_id!r} in {', '.join(map(str, run.paths))}")
    row = sessions.iloc[int(hits[0])]

    if run.matches is None:
        matches = pd.DataFrame({"rule": pd.Series([], dtype="string")})
    else:
        matches = run.matches.loc[run.matches["session_id"] == session_id]
        matches = matches.sort_values("rule_index", kind="stable").reset_index(drop=True)
        if run.flow_matrix is not None:
            descriptions = {rule.name: rule.description for rule in run.flow_matrix.rules}
            matches["description"] = matches["rule"].map(descriptions).astype("string")

    fragments, conversation = _fragments(run, row)
    # a run's flows table holds each session's records in arrival order already: sorted
    # again by file name, tcpdump -C's `cap10` came before `cap2` (an audit)
    flows = run.flows.loc[run.flows["session_id"] == session_id]
    related_mask = sessions["follows_session_id"] == session_id
    if _present(row["follows_session_id"]):
        related_mask |= sessions["session_id"] == row["follows_session_id"]
    return SessionDrawer(
        session=row,
        matches=matches,
        fragments=fragments,
        conversation=conversation,
        consolidated=_consolidated(run, session_id),
        related=sessions.loc[related_mask.fillna(False).astype(bool)].reset_index(drop=True),
        flows=flows.reset_index(drop=True),
    )


def _fragments(run: Run, row: pd.Series) -> tuple[pd.DataFrame, pd.Series | None]:
    """Sessions of the row's conversation in order, and recombine's conversation row."""
    sessions = run.sessions
    if run.fragments is not None:
        table = run.fragments
        mine = table.loc[table["session_id"] == row["session_id"], "conversation_id"]
        if len(mine):
            conversation_id = mine.iloc[0]
            members = table.loc[
                table["conversation_id"] == conversation_id,
                [c for c in FRAGMENT_COLUMNS if c in table.columns],
            ]
            ordered = members.merge(sessions, on="session_id", how="left", validate="1:1")
            ordered = ordered.sort_values("fragment_index", kind="stable").reset_index(drop=True)
            conversation = None
            if run.recombined is not None:
                found = run.recombined.loc[run.recombined["conversation_id"] == conversation_id]
                conversation = found.iloc[0] if len(found) else None
            return ordered, conversation
    same = sessions["conversation_id"] == row["conversation_id"]
    if "run" in sessions.columns:
        same &= sessions["run"] == row["run"]
    ordered = sessions.loc[same].sort_values("split", kind="stable").reset_index(drop=True)
    return ordered, None


def _consolidated(run: Run, session_id: str) -> pd.DataFrame:
    """Rows of sessions_consolidated whose `session_ids` list names the session."""
    table = run.consolidated
    if table is None or "session_ids" not in table.columns or not len(table):
        return pd.DataFrame()
    lists = pa.array(table["session_ids"])
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    values = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    # (pyarrow-stubs take no Python scalar in a compute function; pyarrow does)
    hit = pc.equal(values, session_id).to_numpy(zero_copy_only=False)  # type: ignore[call-overload]
    rows = np.unique(parents[np.asarray(hit, dtype=bool)])
    return table.iloc[rows].reset_index(drop=True)


def human_bytes(count: float) -> str:
    """1234567 -> "1.2 MB" (decimal units, as the seed's example writes them)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


def _present(value: object) -> bool:
    return (
        value is not None
        and not (isinstance(value, float) and np.isnan(value))
        and value is not pd.NaT
        and value is not pd.NA
    )
