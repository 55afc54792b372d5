"""The Sessions page's filters as vectorized boolean masks, and SessionQuery to compose them.

Each filter takes a DataFrame (sessions, consolidated sessions, session_matches or flows)
and returns a boolean Series aligned with it, so filters combine with `&`, `|` and `~` and
index with `frame[mask]`. Which columns a filter reads follows from the table: sessions
have `ip_a`/`ip_b` and `client_ip`/`server_ip`, flows `src_addr`/`dst_addr`. SessionQuery
holds one page's worth of filter settings, applies them to a Run (which supplies the data's
end time, the Cartography and the matches); `describe()` words it as the seed's queries.

Semantics (tested in tests/query/test_filters.py):

* time window: a row is in [start, end] when any part of it is (`opened_at <= end` and
  `last_seen_at >= start`), so a long SSH session opened yesterday that is still sending
  shows in the last hour. `last=3600` means [data end - 3600 s, data end], with the data's
  end from the manifest, never the wall clock.
* entity: an address, a CIDR or a Cartography name (host, network, group, built-in) on
  either endpoint, or on one side: client, server, a, b (src, dst for flows).
* unmatched: closed sessions with no row in session_matches (the seed's definition; active
  and half-open sessions are not "unmatched", they are not finished). A capture ends in
  the middle of conversations, so `unmatched(..., states=("active",))` asks the same of the
  ones it cut off.

The surprising thing: addresses are text in the tables, yet an entity filter never parses a
row's address. Each distinct address is parsed once and looked up in the entity's interval
set with one `searchsorted`, then the answer is gathered back to the rows through the
dictionary indices, so a million sessions among a few thousand hosts cost a few thousand
parses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..addresses import address_text, parse_address
from ..errors import UsageError
from ..matching.address_sets import ADDRESS_VALUE, AddressSet
from ..matching.cartography import Cartography
from ..matching.match import ANSWERS_ALONE_COLUMNS
from ..matching.match import answers_alone as match_answers_alone
from ..matching.services import (
    PORT_MAX,
    PROTOCOL_NUMBERS,
    parse_port_range,
    parse_protocol,
)
from ..protocols import PORT_PROTOCOLS
from ..schema import CLOSE_REASONS, STATES
from ..times import nfdump_time

if TYPE_CHECKING:
    from .run import Run

TimeLike: TypeAlias = str | date | datetime | pd.Timestamp
MAX_LAST_S = 100 * 365 * 86_400  # last= beyond a century is a slip (1e30 overflowed pandas)
# (start column, end column) of each table kind, in the order they are looked for
TIME_COLUMNS = (("opened_at", "last_seen_at"), ("first_seen", "last_seen"))
ADDRESS_SIDES = {
    "client": "client_ip",
    "server": "server_ip",
    "a": "ip_a",
    "b": "ip_b",
    "src": "src_addr",
    "dst": "dst_addr",
}
PORT_SIDES = {
    "client": "client_port",
    "server": "server_port",
    "a": "port_a",
    "b": "port_b",
    "src": "src_port",
    "dst": "dst_port",
}
# the seed's and the Flow Matrix's words for the sides: a rule's source is the client (on
# flows, the record's source); the first side whose column the table has
SIDE_ALIASES = {"source": ("client", "src"), "destination": ("server", "dst")}
# "either endpoint": the first pair the table has
EITHER_ADDRESS = (("ip_a", "ip_b"), ("client_ip", "server_ip"), ("src_addr", "dst_addr"))
EITHER_PORT = (("port_a", "port_b"), ("client_port", "server_port"), ("src_port", "dst_port"))


def time_window(
    frame: pd.DataFrame,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    last: float | pd.Timedelta | None = None,
    data_end: TimeLike | None = None,
) -> pd.Series:
    """Rows that overlap [start, end], or the `last` seconds before `data_end`."""
    first_column, last_column = _time_columns(frame)
    if last is not None and data_end is None and frame.empty:
        return pd.Series(True, index=frame.index)  # an empty run has no end, and no rows
    low, high = window_bounds(start, end, last=last, data_end=data_end)
    mask = pd.Series(True, index=frame.index)
    if low is not None:
        mask &= frame[last_column] >= low
    if high is not None:
        mask &= frame[first_column] <= high
    return mask


def window_bounds(
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    last: float | pd.Timedelta | None = None,
    data_end: TimeLike | None = None,
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """(low, high) UTC bounds of a window; `last` counts back from the data's end."""
    high: pd.Timestamp | None
    if last is not None:
        if start is not None or end is not None:
            raise UsageError("give either last= or start/end, not both")
        if data_end is None:
            raise UsageError("last= needs the data's end time (the manifest's data_window.end)")
        if not isinstance(last, pd.Timedelta) and not (
            math.isfinite(float(last)) and 0 <= float(last) <= MAX_LAST_S
        ):
            raise UsageError(f"last= takes seconds from 0 to {MAX_LAST_S:,}, got {last!r}")
        span = last if isinstance(last, pd.Timedelta) else pd.Timedelta(seconds=float(last))
        if span < pd.Timedelta(0):
            raise UsageError(f"last= must not be negative, got {last!r}")
        high = utc_timestamp(data_end)
        return high - span, high
    low = None if start is None else utc_timestamp(start)
    high = None if end is None else utc_timestamp(end)
    if high is not None and (days := _days_named(end, high)) is not None:
        # the whole day: window("2011-06-24", "2011-06-24") held nothing (an audit); the
        # whole month or year alike ("2024-03" as the end was midnight on the 1st)
        high = high + pd.Timedelta(days=days) - pd.Timedelta(microseconds=1)
    if low is not None and high is not None and low > high:
        raise UsageError(f"the window starts ({low}) after it ends ({high})")
    return low, high


def utc_timestamp(value: TimeLike) -> pd.Timestamp:
    """Time text or object -> UTC Timestamp; a time without zone is UTC. Not a number (pandas
    reads 1308930700 as nanoseconds after 1970) nor a word of the wall clock (`now`,
    `today`): a window is of the data, never of when the query runs (found by an audit)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        raise UsageError(
            f"time {value!r}: give ISO-8601 text or a datetime (a number would be "
            "read as nanoseconds since 1970)"
        )
    if isinstance(value, str) and value.strip().lower() in _CLOCK_WORDS:
        raise UsageError(
            f"time {value!r}: a window is of the data, not of the wall clock "
            "(use last= to count back from the data's end)"
        )
    if isinstance(value, str) and (written := nfdump_time(value)) is not None:
        return pd.Timestamp(written)  # nfdump's 2011/06/24.15:52:00, as --from takes it
    try:
        moment = pd.Timestamp(value)
    except ValueError as exc:
        raise UsageError(f"cannot read {value!r} as a time") from exc
    # (pandas-stubs: a Timestamp is never NaT; pd.Timestamp("NaT") is)
    if moment is pd.NaT:  # type: ignore[comparison-overlap]
        raise UsageError(f"cannot read {value!r} as a time")
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


_CLOCK_WORDS = ("now", "today", "yesterday", "tomorrow")


_DAY = re.compile(r"\d{4}([-/])\d{2}\1\d{2}|\d{8}", re.ASCII)
_MONTH = re.compile(r"\d{4}[-/]\d{2}", re.ASCII)
_YEAR = re.compile(r"\d{4}", re.ASCII)


def _days_named(value: TimeLike | None, first: pd.Timestamp) -> int | None:
    """The days of the period a time without a time of day names, from `first`, its start
    as pandas reads it: a day (`2011-06-24`, nfdump's `2011/06/24`, `20110624`, a
    `datetime.date`: as an end it was midnight, not the whole day the text gives, an
    audit), a month (`2011-06`) or a year (`2011`); None for a time of day, an instant.
    Counted, not added as a calendar offset: datetime's arithmetic refused the month or
    year that ends 9999."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return 1
    text = value.strip() if isinstance(value, str) else ""
    if _DAY.fullmatch(text):
        return 1
    if _MONTH.fullmatch(text):
        return int(first.days_in_month)
    if _YEAR.fullmatch(text):
        return 366 if first.is_leap_year else 365
    return None


def entity(
    frame: pd.DataFrame,
    reference: str,
    *,
    side: str = "either",
    cartography: Cartography | None = None,
) -> pd.Series:
    """Rows whose endpoint on `side` (default either) is in the address, CIDR or name."""
    chart = cartography if cartography is not None else Cartography.builtin()
    addresses = chart.resolve(reference)
    if side == "either":
        first, second = _column_pair(frame, EITHER_ADDRESS, "addresses")
        inside = address_membership(frame[first], addresses)
        inside |= address_membership(frame[second], addresses)
    else:
        inside = address_membership(frame[_side_column(frame, ADDRESS_SIDES, side)], addresses)
    return pd.Series(inside, index=frame.index)


def address_membership(texts: pd.Series, addresses: AddressSet) -> np.ndarray:
    """bool per row: is the text address in the set? Missing addresses are not."""
    array = pa.array(texts, type=pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    # (pyarrow-stubs type dictionary_encode's result as its input's type)
    encoded = cast("pa.DictionaryArray[Any, Any]", pc.dictionary_encode(array))
    # (the dictionary holds no null: dictionary_encode leaves nulls in the indices)
    distinct = cast("list[str]", encoded.dictionary.to_pylist())
    raw = bytearray()
    for text in distinct:
        try:
            raw += parse_address(text)
        except ValueError:
            raise UsageError(f"column {texts.name}: {text!r} is not an address") from None
    inside = addresses.contains(np.frombuffer(bytes(raw), dtype=ADDRESS_VALUE))
    indices = encoded.indices
    if indices.null_count:
        # (pyarrow-stubs: fill_null takes no Python scalar, and so its result is no array)
        filled = pc.fill_null(indices, 0).to_numpy(zero_copy_only=False)  # type: ignore[type-var, attr-defined]
        valid = pc.is_valid(indices).to_numpy(zero_copy_only=False)
        return inside[filled] & valid if len(inside) else np.zeros(len(array), dtype=bool)
    return cast(np.ndarray, inside[indices.to_numpy(zero_copy_only=False)])


def protocol(frame: pd.DataFrame, *protocols: str | int) -> pd.Series:
    """Rows of any of the protocols (names like tcp, ICMP or numbers)."""
    numbers = _protocol_numbers(protocols)
    return pd.Series(np.isin(_protocol_column(frame), numbers), index=frame.index)


def port(frame: pd.DataFrame, *ports: int | str, side: str = "server") -> pd.Series:
    """Rows whose port on `side` (default the server's) is one of the ports or ranges."""
    if not ports:
        raise UsageError("port() needs at least one port or range")
    table = np.zeros(PORT_MAX + 1, dtype=bool)
    for item in ports:
        try:
            first, last = parse_port_range(str(item))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        table[first : last + 1] = True
    if side == "either":
        first_column, second_column = _column_pair(frame, EITHER_PORT, "ports")
        hit = table[_numbers(frame[first_column])] | table[_numbers(frame[second_column])]
    else:
        hit = table[_numbers(frame[_side_column(frame, PORT_SIDES, side)])]
    # only protocols that have ports: an ICMP, IGMP or EIGRP session holds 0 (or the ICMP
    # type and code) there, and `port("0-1023")` took them in (found by an audit)
    hit &= np.isin(_protocol_column(frame), _PORT_PROTOCOLS)
    return pd.Series(hit, index=frame.index)


def service(frame: pd.DataFrame, text: str) -> pd.Series:
    """Rows of a service written as in the Cartography: `tcp/443`, `udp/53,5353`, `icmp`."""
    protocol_text, slash, ports_text = text.partition("/")
    mask = protocol(frame, protocol_text)
    if slash:
        if parse_protocol(protocol_text) is None:  # any
            raise UsageError(
                f"service {text!r}: ports need a protocol (tcp, udp, sctp or udplite), not any"
            )
        if not set(_protocol_numbers((protocol_text,))).issubset(PORT_PROTOCOLS):
            raise UsageError(
                f"service {text!r}: {protocol_text} has no ports (the Cartography refuses them too)"
            )
        mask &= port(frame, *[p for p in ports_text.split(",") if p.strip()])
    return mask


def state(frame: pd.DataFrame, *states: str) -> pd.Series:
    """Rows in any of the states (active, half_open, closed)."""
    _check_known(states, STATES, "state")
    _need(frame, "state", "state()")
    return frame["state"].isin(states).fillna(False).astype(bool)


def close_reason(frame: pd.DataFrame, *reasons: str) -> pd.Series:
    """Closed rows with any of the close reasons (fin, rst, rejected, no_reply, ...)."""
    _check_known(reasons, CLOSE_REASONS, "close reason")
    _need(frame, "close_reason", "close_reason()")
    return frame["close_reason"].isin(reasons).fillna(False).astype(bool)


def answers_alone(frame: pd.DataFrame) -> pd.Series:
    """Sessions standing alone whose client sent nothing the exporter saw (fragment 0, not
    late, unsampled): matched by the rules of the client's requests, as the contract has
    it, they are one-way routing, a loss, or answers nobody asked for (DNS answers from
    port 53, echo replies, a backscatter SYN-ACK), which "Unmatched only" does not show."""
    for column in ANSWERS_ALONE_COLUMNS:
        _need(frame, column, "answers_alone()")
    client_is_a = (frame["client_ip"].astype(str) == frame["ip_a"].astype(str)).to_numpy(
        dtype=bool
    ) & (_numbers(frame["client_port"]) == _numbers(frame["port_a"]))
    counters = {
        name: frame[name].to_numpy(dtype=np.uint64, na_value=0)
        for name in ("ab_packets", "ba_packets", "ab_bytes", "ba_bytes")
    }
    told = match_answers_alone(
        client_is_a,
        counters,
        _numbers(frame["split"]),
        frame["late"].to_numpy(dtype=bool, na_value=False),
        _numbers(frame["sampling_rate"]),
    )
    return pd.Series(told, index=frame.index)


def _need(frame: pd.DataFrame, column: str, what: str) -> None:
    """A filter of a column this table does not have: said, not a KeyError (an audit found
    state(), close_reason(), exporter(), unmatched() and rule() raising one on the flows,
    consolidated and matches tables)."""
    if column not in frame.columns:
        raise UsageError(
            f"{what} needs column {column}, which this table lacks (it applies to sessions)"
        )


def exporter(frame: pd.DataFrame, *exporters: str) -> pd.Series:
    """Rows reported by any of the exporters: `10.0.0.1`, or `10.0.0.1/256` for one domain."""
    if not exporters:
        raise UsageError("exporter() needs at least one exporter")
    _need(frame, "exporter", "exporter()")
    mask = pd.Series(False, index=frame.index)
    names = frame["exporter"].astype("string")
    for item in exporters:
        name, slash, domain = str(item).partition("/")
        hit = names == _address_as_written(name)
        if slash:
            if not (domain.isascii() and domain.isdigit()):  # (٦ and ² passed: a review)
                raise UsageError(f"bad exporter {item!r}: the domain after / is a number")
            hit &= frame["exporter_domain"] == int(domain)
        mask |= hit.fillna(False).astype(bool)
    return mask


def _address_as_written(text: str) -> str:
    """An exporter address as the tables write it (`2001:DB8::1` -> `2001:db8::1`); text
    that is no address is left as it is (and matches nothing)."""
    try:
        return address_text(parse_address(text.strip()))
    except ValueError:
        return text


def unmatched(
    frame: pd.DataFrame, matches: pd.DataFrame | None, states: tuple[str, ...] = ("closed",)
) -> pd.Series:
    """Sessions in `states` (default closed) that no Flow Matrix rule accounted for.

    Closed only is the seed's definition. A capture taken for an incident usually ends in
    the middle of conversations, so a review also asks the same of `("active",)`.
    """
    if matches is None:
        raise UsageError(
            "the run has no session_matches table (sessionize ran without "
            "--flow-matrix, or the file is missing from the run directory); "
            "rematch(run, flow_matrix) supplies them"
        )
    _check_known(states, STATES, "state")
    _need(frame, "state", "unmatched()")
    covered = _holds(frame, matches["session_id"], "unmatched()")
    chosen = frame["state"].isin(states)
    return (chosen & ~covered).fillna(False).astype(bool)


def _holds(frame: pd.DataFrame, ids: pd.Series, what: str) -> pd.Series:
    """Rows whose session is among `ids`: a session's `session_id`, or any fragment of a
    recombined conversation (`session_ids`), so that the seed's "Unmatched only" asks the
    conversations of several runs too (it raised a KeyError there: a review)."""
    if "session_id" not in frame.columns and "session_ids" in frame.columns:
        # by position: a frame's index need not be unique (concatenated runs)
        fragments = frame["session_ids"].reset_index(drop=True).explode()
        hit = (fragments.isin(ids) & fragments.notna()).groupby(level=0).any()
        held = hit.reindex(range(len(frame)), fill_value=False).to_numpy(dtype=bool)
        return pd.Series(held, index=frame.index)
    _need(frame, "session_id", what)
    return frame["session_id"].isin(ids)


def rule(frame: pd.DataFrame, matches: pd.DataFrame | None, *rules: str) -> pd.Series:
    """Sessions that matched any of the named Flow Matrix rules."""
    if matches is None:
        raise UsageError(
            "the run has no session_matches table (sessionize ran without "
            "--flow-matrix, or the file is missing from the run directory)"
        )
    wanted = matches.loc[matches["rule"].isin(rules), "session_id"]
    return _holds(frame, wanted, "rule()").fillna(False).astype(bool)


@dataclass(frozen=True)
class SessionQuery:
    """One Sessions-page view: a window and filters, all ANDed; each method returns a copy.

    `SessionQuery().last(3600).entity("databases").state("closed").apply(run)`. Applied to
    a run, the names it gives are checked against what the run knows: a rule the run's
    Flow Matrix does not have, or an exporter that sent the run nothing, is refused (a
    typo returned no rows, as if no session had matched).
    """

    start: TimeLike | None = None
    end: TimeLike | None = None
    last_s: float | None = None
    entities: tuple[tuple[str, str], ...] = ()  # (reference, side)
    protocols: tuple[str | int, ...] = ()
    ports: tuple[tuple[tuple[int | str, ...], str], ...] = ()  # (ports, side)
    services: tuple[str, ...] = ()  # any of them, written as in the Cartography
    states: tuple[str, ...] = ()
    close_reasons: tuple[str, ...] = ()
    exporters: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    unmatched_states: tuple[str, ...] = ()  # () = no unmatched filter; ("closed",) = the seed's
    only_answers_alone: bool = False

    def window(self, start: TimeLike | None = None, end: TimeLike | None = None) -> SessionQuery:
        return replace(self, start=start, end=end, last_s=None)

    def last(self, seconds: float | str | timedelta) -> SessionQuery:
        """The last `seconds` (a number, a duration as the settings write it: `1h`, `90s`,
        or a timedelta) before the data's end."""
        if isinstance(seconds, timedelta):  # pd.Timedelta too
            return replace(self, start=None, end=None, last_s=seconds.total_seconds())
        if isinstance(seconds, str):
            from ..sessionize.policy import parse_duration

            return replace(
                self, start=None, end=None, last_s=parse_duration(seconds, "last") / 1_000_000
            )
        return replace(self, start=None, end=None, last_s=float(seconds))

    def entity(self, reference: str, side: str = "either") -> SessionQuery:
        return replace(self, entities=(*self.entities, (reference, side)))

    def protocol(self, *protocols: str | int) -> SessionQuery:
        return replace(self, protocols=(*self.protocols, *protocols))

    def port(self, *ports: int | str, side: str = "server") -> SessionQuery:
        return replace(self, ports=(*self.ports, (tuple(ports), side)))

    def service(self, *services: str) -> SessionQuery:
        """Sessions of any of the services: `tcp/443`, `udp/53,5353`, `icmp`."""
        return replace(self, services=(*self.services, *services))

    def state(self, *states: str) -> SessionQuery:
        return replace(self, states=(*self.states, *states))

    def close_reason(self, *reasons: str) -> SessionQuery:
        return replace(self, close_reasons=(*self.close_reasons, *reasons))

    def exporter(self, *exporters: str) -> SessionQuery:
        return replace(self, exporters=(*self.exporters, *exporters))

    def rule(self, *rules: str) -> SessionQuery:
        return replace(self, rules=(*self.rules, *rules))

    def unmatched(self, *states: str) -> SessionQuery:
        """Unmatched only: closed sessions without a rule, or those in `states` if given."""
        return replace(self, unmatched_states=states or ("closed",))

    def answers_alone(self) -> SessionQuery:
        """Sessions whose client was seen sending nothing (filters.answers_alone)."""
        return replace(self, only_answers_alone=True)

    def mask(self, run: Run, frame: pd.DataFrame | None = None) -> pd.Series:
        """bool per row of `frame` (default: the run's sessions)."""
        rows = run.sessions if frame is None else frame
        mask = pd.Series(True, index=rows.index)
        if self.last_s is not None or self.start is not None or self.end is not None:
            mask &= time_window(rows, self.start, self.end, last=self.last_s, data_end=run.data_end)
        for reference, side in self.entities:
            mask &= entity(rows, reference, side=side, cartography=run.cartography)
        if self.protocols:
            mask &= protocol(rows, *self.protocols)
        for ports, side in self.ports:
            mask &= port(rows, *ports, side=side)
        if self.services:
            either = pd.Series(False, index=rows.index)
            for text in self.services:
                either |= service(rows, text)
            mask &= either
        if self.states:
            mask &= state(rows, *self.states)
        if self.close_reasons:
            mask &= close_reason(rows, *self.close_reasons)
        if self.exporters:
            _check_exporters(run, self.exporters)
            mask &= exporter(rows, *self.exporters)
        if self.rules:
            _check_rules(run, self.rules)
            mask &= rule(rows, run.matches, *self.rules)
        if self.unmatched_states:
            mask &= unmatched(rows, run.matches, self.unmatched_states)
        if self.only_answers_alone:
            mask &= answers_alone(rows)
        return mask

    def apply(self, run: Run, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """The rows of `frame` (default: the run's sessions) this view shows."""
        rows = run.sessions if frame is None else frame
        return rows.loc[self.mask(run, rows)]

    def describe(self) -> str:
        """The view as one line, in the seed's query words, for notebook headings and logs."""
        parts = []
        if self.last_s is not None:
            parts.append(f"LAST {self.last_s:g}")
        elif self.start is not None or self.end is not None:
            parts.append(f"FROM {self.start or '…'} TO {self.end or '…'}")
        for reference, side in self.entities:
            column = "ip" if side == "either" else ADDRESS_SIDES.get(side, side)
            parts.append(f'{column} == "{reference}"')
        if self.protocols:
            parts.append("protocol in (" + ", ".join(map(str, self.protocols)) + ")")
        for ports, side in self.ports:
            column = "port" if side == "either" else PORT_SIDES.get(side, side)
            parts.append(f"{column} in (" + ", ".join(map(str, ports)) + ")")
        if self.services:
            parts.append("service in (" + ", ".join(self.services) + ")")
        if self.states:
            parts.append("state in (" + ", ".join(self.states) + ")")
        if self.close_reasons:
            parts.append("close_reason in (" + ", ".join(self.close_reasons) + ")")
        if self.exporters:
            parts.append("exporter in (" + ", ".join(self.exporters) + ")")
        if self.rules:
            parts.append("rule in (" + ", ".join(self.rules) + ")")
        if self.unmatched_states == ("closed",):
            parts.append("unmatched only")
        elif self.unmatched_states:
            parts.append("unmatched (" + ", ".join(self.unmatched_states) + ")")
        if self.only_answers_alone:
            parts.append("answers alone")
        return " AND ".join(parts) if parts else "all sessions"


def _check_rules(run: Run, rules: tuple[str, ...]) -> None:
    """Refuse a rule name the run's Flow Matrix does not have (when it is known: the rules
    of other loaded runs count by their matches)."""
    if run.flow_matrix is None:
        return
    known = {r.name for r in run.flow_matrix.rules}
    if run.matches is not None:
        known |= set(run.matches["rule"].dropna().unique())
    unknown = [name for name in rules if name not in known]
    if unknown:
        raise UsageError(
            f"no rule {unknown[0]!r} in the Flow Matrix "
            f"({run.flow_matrix.path or 'of the run'}): "
            f"{', '.join(sorted(known)) or 'it has no rules'}"
        )


def _check_exporters(run: Run, exporters: tuple[str, ...]) -> None:
    """Refuse an exporter the run never heard from (its exporters table, else its sessions)."""
    source = (
        run.exporters if run.exporters is not None and "exporter" in run.exporters else run.sessions
    )
    known = set(source["exporter"].dropna().astype(str).unique())
    for item in exporters:
        address, slash, domain = str(item).partition("/")
        name = _address_as_written(address)
        if name not in known:
            listed = ", ".join(sorted(known)[:10]) + (" ..." if len(known) > 10 else "")
            raise UsageError(
                f"no exporter {item!r} in this run (its exporters: {listed or 'none'})"
            )
        if slash and "exporter_domain" in source and domain.isascii() and domain.isdigit():
            # a domain it never sent from returned no rows, as if nothing matched (an audit)
            domains = sorted(
                int(d)
                for d in source.loc[source["exporter"].astype(str) == name, "exporter_domain"]
                .dropna()
                .unique()
            )
            if int(domain) not in domains:
                raise UsageError(
                    f"no exporter {item!r} in this run ({name} sent from "
                    f"domain(s) {', '.join(map(str, domains)) or 'none'})"
                )


def _time_columns(frame: pd.DataFrame) -> tuple[str, str]:
    for pair in TIME_COLUMNS:
        if all(column in frame.columns for column in pair):
            return pair
    raise UsageError(
        "this table has no time span columns (opened_at/last_seen_at or first_seen/last_seen)"
    )


def _column_pair(
    frame: pd.DataFrame, pairs: tuple[tuple[str, str], ...], what: str
) -> tuple[str, str]:
    for pair in pairs:
        if all(column in frame.columns for column in pair):
            return pair
    raise UsageError(f"this table has no pair of endpoint {what}")


def _side_column(frame: pd.DataFrame, sides: dict[str, str], side: str) -> str:
    if side in SIDE_ALIASES:
        side = next(
            (name for name in SIDE_ALIASES[side] if sides[name] in frame.columns),
            SIDE_ALIASES[side][0],
        )
    if side not in sides:
        raise UsageError(
            f"unknown side {side!r} (either, {', '.join(sides)}, {', '.join(SIDE_ALIASES)})"
        )
    column = sides[side]
    if column not in frame.columns:
        present = [name for name, wanted in sides.items() if wanted in frame.columns]
        # which sides this table has (port(53) of the flows: side="src" or "dst", a review)
        raise UsageError(
            f"side {side!r} needs column {column}, which this table lacks"
            + (
                f"; it has side={' or side='.join(repr(name) for name in present)}"
                if present
                else ""
            )
        )
    return column


def _numbers(column: pd.Series) -> np.ndarray:
    return column.to_numpy(dtype=np.int64, na_value=0)


def _protocol_numbers(protocols: Iterable[str | int]) -> np.ndarray:
    numbers = []
    for item in protocols:
        try:
            number = parse_protocol(str(item))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if number is None:
            return np.arange(256)
        numbers.append(number)
    if not numbers:
        raise UsageError("protocol() needs at least one protocol")
    return np.asarray(numbers, dtype=np.int64)


_PORT_PROTOCOLS = np.array(sorted(PORT_PROTOCOLS), dtype=np.int64)


def _protocol_column(frame: pd.DataFrame) -> np.ndarray:
    """Protocol numbers per row, from protocol_number, a numeric protocol, or its keyword."""
    if "protocol_number" in frame.columns:
        return _numbers(frame["protocol_number"])
    column = frame["protocol"]
    if pd.api.types.is_numeric_dtype(column):
        return _numbers(column)
    words = column.astype("string").str.lower()
    known = words.map(PROTOCOL_NUMBERS)
    digits = pd.to_numeric(words, errors="coerce")
    return known.fillna(digits).fillna(-1).to_numpy(dtype=np.int64)


def _check_known(values: tuple[str, ...], known: tuple[str, ...], what: str) -> None:
    if not values:
        raise UsageError(f"give at least one {what}")
    for value in values:
        if value not in known:
            raise UsageError(f"unknown {what} {value!r} (one of {', '.join(known)})")
