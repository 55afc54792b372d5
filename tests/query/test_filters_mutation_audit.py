"""Behaviour of the query filters (query/filters.py) and of the Flow Matrix reader
(matching/flow_matrix.py) that no test pinned, found by a mutation audit: 77 small changes,
57 to filters.py (Q01-Q57) and 20 to flow_matrix.py (X01-X20), each run against
tests/query/test_filters.py, tests/matching/test_flow_matrix.py and
tests/test_mutation_audit.py. 36 of them no test noticed (nor did the rest of tests/query,
tests/matching/test_match.py and test_consolidate_mutation_audit.py); 29 were real gaps,
killed here, and 7 are equivalent.

Left, as equivalent on every table the tool writes or in every file it reads:

* Q47 (`_numbers` reads a missing value as -1, not 0) and Q49 (a protocol keyword it
  cannot read taken as 0, not -1): ports, protocol numbers and keywords are never null in
  the sessions, flows and consolidated tables, and every keyword they write is known.
* X10 (a protocol listed twice kept twice), X12 (port ranges left unmerged) and X13
  (protocols left unsorted): `Service` puts both in one normal form itself.
* X19 (`Service(None if not protocols ...)` for `None if any_protocol`): with `any` there
  is no other protocol (refused), and without it there is at least one (an empty list or
  entry is refused), so the two conditions are one.

Q01-Q57 and X01-X20 are this audit's own numbering (tests/test_mutation_audit.py's F03,
F06, M07 and M08 are the thirty-fourth session's). Each test fails with its change applied
and names it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from obserae_forensics import query
from obserae_forensics.errors import UsageError
from obserae_forensics.matching import FlowMatrix, load_cartography, load_flow_matrix
from obserae_forensics.query import SessionQuery
from obserae_forensics.query.filters import MAX_LAST_S
from tests.matching.test_flow_matrix import CARTOGRAPHY, RULE

from .run_dirs import at, write_run
from .test_filters import ALL, ids, shown


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> query.Run:
    return query.load(write_run(tmp_path_factory.mktemp("run") / "hand"))


# --- query/filters.py: windows ----------------------------------------------------------


def test_last_takes_zero_seconds_and_up_to_a_century_inclusive(run: query.Run) -> None:
    """Kills Q05 (`0 <= last` -> `0 < last`), Q06 (`last <= MAX_LAST_S` -> `<`) and Q52
    (the century cut to ten years): the refusal says "seconds from 0 to" the bound, so both
    ends are allowed; no session reaches the data end 11:00:00 itself."""
    assert shown(run, query.time_window(run.sessions, last=0, data_end=run.data_end)) == []
    for seconds in (50 * 365 * 86_400, MAX_LAST_S):
        assert shown(run, query.time_window(run.sessions, last=seconds, data_end=run.data_end)) == (
            ALL
        )
    with pytest.raises(UsageError, match="seconds from 0 to"):
        query.time_window(run.sessions, last=MAX_LAST_S + 1, data_end=run.data_end)


def test_last_with_an_end_alone_or_a_negative_timedelta_is_refused(run: query.Run) -> None:
    """Kills Q53 (last= refused with a start only, not with an end) and Q54 (a negative
    Timedelta taken): the window counted back would end before it starts."""
    with pytest.raises(UsageError, match="either last= or start/end"):
        query.time_window(run.sessions, end=at("10:00:00"), last=60, data_end=run.data_end)
    with pytest.raises(UsageError, match="must not be negative"):
        query.time_window(run.sessions, last=pd.Timedelta(seconds=-1), data_end=run.data_end)


def test_a_day_as_the_start_stays_its_midnight(run: query.Run) -> None:
    """Kills Q08 (the whole-day extension taken when the *start* is a day): only a day as
    the end means up to its last microsecond; [midnight, 10:05] holds s5a, s5b and s1."""
    view = SessionQuery().window("2024-03-01", "2024-03-01T10:05:00Z")
    assert ids(view.apply(run)) == ["s1", "s5a", "s5b"]


def test_a_day_written_with_spaces_around_is_still_a_whole_day(run: query.Run) -> None:
    """Kills Q13 (the whole-day test without `strip()`): pandas reads " 2024-03-01 " as that
    day, and as the end it is the whole day, as without the spaces."""
    assert ids(SessionQuery().window(" 2024-03-01 ", " 2024-03-01 ").apply(run)) == ALL


def test_window_bounds_are_in_utc() -> None:
    """Kills Q10 (a time with a zone left in it, not converted): window_bounds gives "UTC
    bounds", as the tables' times are."""
    low, high = query.window_bounds("2024-03-01T12:00:00+02:00", "2024-03-01T13:00:00+02:00")
    assert low is not None and high is not None
    assert (str(low.tz), str(high.tz)) == ("UTC", "UTC")
    assert (low.hour, high.hour) == (10, 11)


def test_every_word_of_the_wall_clock_is_refused(run: query.Run) -> None:
    """Kills Q11 (`yesterday` left out of the wall-clock words): a window is of the data."""
    for word in ("now", "today", "yesterday", "tomorrow"):
        with pytest.raises(UsageError, match="not of the wall clock"):
            SessionQuery().window(word, None).apply(run)


def test_a_numpy_integer_is_no_time() -> None:
    """Kills Q55 (only Python numbers refused): np.int64 is no `int`, and pandas reads it
    as nanoseconds after 1970 all the same (a value taken from a DataFrame cell)."""
    with pytest.raises(UsageError, match="read as nanoseconds"):
        query.window_bounds(np.int64(1_709_287_200), None)  # type: ignore[arg-type]


def test_last_takes_a_timedelta_longer_than_a_day(run: query.Run) -> None:
    """Kills Q35 (`timedelta.seconds`, the seconds within its last day, for
    `total_seconds()`): a day and an hour reaches back past 08:45, to every session."""
    assert ids(SessionQuery().last(timedelta(days=1, hours=1)).apply(run)) == ALL


# --- query/filters.py: ports, services, protocols ---------------------------------------


def test_port_is_the_servers_by_default(run: query.Run) -> None:
    """Kills Q19 and Q20 (port()'s and SessionQuery.port's default side `either`): s2's
    5353 is its client's port, and the seed's port filter is the service's."""
    assert shown(run, query.port(run.sessions, 5353)) == []
    assert ids(SessionQuery().port(5353).apply(run)) == []
    assert shown(run, query.port(run.sessions, 53)) == ["s2"]


def test_a_service_with_a_slash_and_no_port_is_refused(run: query.Run) -> None:
    """Kills Q21 (the ports read only when text follows the slash): `tcp/` would be every
    TCP session, where a port was meant and forgotten."""
    with pytest.raises(UsageError, match="needs at least one port"):
        query.service(run.sessions, "tcp/")


def test_a_services_port_list_may_end_in_a_comma(run: query.Run) -> None:
    """Kills Q25 (empty items of the port list kept): `udp/53,` is `udp/53`."""
    assert shown(run, query.service(run.sessions, "udp/53,")) == ["s2"]
    assert shown(run, query.service(run.sessions, "tcp/22, 80,")) == ["s3", "s8"]


def test_protocol_state_and_close_reason_need_one_value(run: query.Run) -> None:
    """Kills Q48 (protocol() of nothing) and Q27 (state(), close_reason() of nothing): each
    would have returned no rows, as if no session were of it."""
    with pytest.raises(UsageError, match="needs at least one protocol"):
        query.protocol(run.sessions)
    with pytest.raises(UsageError, match="give at least one state"):
        query.state(run.sessions)
    with pytest.raises(UsageError, match="give at least one close reason"):
        query.close_reason(run.sessions)


def test_a_protocol_written_as_its_number_is_read_from_a_keyword_column() -> None:
    """Kills Q51 (the digits of a keyword column not read): a protocol without an IANA
    keyword is written as its number (protocols.protocol_keyword)."""
    frame = pd.DataFrame({"protocol": pd.array(["TCP", "143", "udp"], dtype="string")})
    assert query.protocol(frame, 143).tolist() == [False, True, False]
    assert query.protocol(frame, "tcp", "UDP").tolist() == [True, False, True]


# --- query/filters.py: exporters, rules, unmatched --------------------------------------


def test_an_exporter_written_with_spaces_around_is_found(run: query.Run) -> None:
    """Kills Q31 (`_address_as_written` without `strip()`): the address is compared as the
    tables write it, as `2001:DB8::A` finds `2001:db8::a`."""
    assert shown(run, query.exporter(run.sessions, " 192.0.2.2 ")) == ["s6"]
    assert ids(SessionQuery().exporter(" 192.0.2.2").apply(run)) == ["s6"]


def test_exporters_are_known_from_the_exporters_table(run: query.Run) -> None:
    """Kills Q44 (the known exporters always taken from the sessions): an exporter that
    sent records but no session is one the run heard from; its sessions are none."""
    table = pd.DataFrame(
        {"exporter": ["192.0.2.1", "192.0.2.2", "192.0.2.9"], "exporter_domain": [0, 256, 0]}
    )
    heard = replace(run, exporters=table)
    assert ids(SessionQuery().exporter("192.0.2.9").apply(heard)) == []


def test_ten_known_exporters_are_listed_without_dots(run: query.Run) -> None:
    """Kills Q46 (`len(known) > 10` -> `>= 10`): ten exporters are all listed, so nothing
    is left unsaid; the eleventh is the first to be marked."""
    ten = [f"192.0.2.{n}" for n in range(10, 20)]
    table = pd.DataFrame({"exporter": ten, "exporter_domain": [0] * 10})
    with pytest.raises(UsageError) as refused:
        SessionQuery().exporter("198.51.100.1").apply(replace(run, exporters=table))
    assert str(refused.value).endswith("192.0.2.19)")
    eleven = pd.DataFrame({"exporter": [*ten, "192.0.2.9"], "exporter_domain": [0] * 11})
    with pytest.raises(UsageError, match=r" \.\.\.\)$"):
        SessionQuery().exporter("198.51.100.1").apply(replace(run, exporters=eleven))


def test_rules_are_known_from_the_matches_too(run: query.Run) -> None:
    """Kills Q43 (the matches' rules not counted as known): loaded with other runs, a
    rule of theirs is known by its matches though the first run's Flow Matrix lacks it."""
    assert run.flow_matrix is not None
    fewer = replace(run.flow_matrix, rules=run.flow_matrix.rules[:2])
    assert "db-access" not in fewer.rule_names
    assert ids(SessionQuery().rule("db-access").apply(replace(run, flow_matrix=fewer))) == [
        "s5a",
        "s5b",
    ]


def test_unmatched_only_is_of_closed_sessions_and_says_so() -> None:
    """Kills Q37 (`unmatched()` of closed and active sessions) and Q41 (any states holding
    `closed` described as "unmatched only"): the seed's unmatched is of closed sessions."""
    assert SessionQuery().unmatched().unmatched_states == ("closed",)
    assert SessionQuery().unmatched().describe() == "unmatched only"
    assert SessionQuery().unmatched("closed", "active").describe() == "unmatched (closed, active)"


def test_describe_names_an_entitys_side() -> None:
    """Kills Q42 (every entity described as `ip`): a client-side filter is not an
    either-side one, and the heading must not say it is."""
    view = SessionQuery().entity("lan", side="client").entity("databases")
    assert view.describe() == 'client_ip == "lan" AND ip == "databases"'


# --- matching/flow_matrix.py -------------------------------------------------------------


def write_matrix(tmp_path: Path, text: str) -> tuple[Path, FlowMatrix | None, str]:
    """Load `text` as a Flow Matrix with the CARTOGRAPHY of test_flow_matrix: (path, the
    matrix or None, the refusal or "")."""
    (tmp_path / "c.yaml").write_text(CARTOGRAPHY)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    try:
        return path, load_flow_matrix(path, load_cartography(tmp_path / "c.yaml")), ""
    except UsageError as exc:
        return path, None, str(exc)


def test_a_rule_without_a_protocol_is_refused_at_its_line(tmp_path: Path) -> None:
    """Kills X01 (`protocol` not required): README, a rule names its protocol (`any` for
    every one); without it the reader raised a KeyError, not a located refusal."""
    text = RULE.replace("    protocol: udp\n", "")
    path, matrix, refusal = write_matrix(tmp_path, text)
    assert matrix is None
    assert refusal == f"{path}:2: rule #1 has no 'protocol'"


def test_a_protocol_is_checked_against_the_ip_version_both_sides_share(
    tmp_path: Path,
) -> None:
    """Kills X04 (the versions of either side, not of both): lan holds IPv4 and IPv6, the
    destination IPv6 only, so a session between them is IPv6 and never ICMP."""
    text = RULE.replace("destination: resolver", "destination: '2001:db8::/32'").replace(
        "udp", "icmp"
    )
    _, matrix, refusal = write_matrix(tmp_path, text)
    assert matrix is None
    assert "icmp is not carried over IPv6" in refusal


def test_the_icmpv6_hint_is_given_for_icmp_only(tmp_path: Path) -> None:
    """Kills X14 (the hint given for any protocol between IPv6 ends): IGMP is no ping, and
    `icmpv6` is no IPv6 IGMP."""
    text = (
        RULE.replace("source: lan", "source: '2001:db8::/32'")
        .replace("destination: resolver", "destination: '2001:db8::/32'")
        .replace("udp", "igmp")
    )
    _, matrix, refusal = write_matrix(tmp_path, text)
    assert matrix is None
    assert "igmp is not carried over IPv6" in refusal
    assert refusal.endswith("the only IP version its source and destination share")


def test_a_rule_keeps_every_name_it_was_written_with(tmp_path: Path) -> None:
    """Kills X07 (only the first name of a side kept): the names are what outputs show for
    a rule's sides."""
    text = RULE.replace("source: lan", "source: [clients, 192.0.2.0/24, '2001:db8::7']")
    _, matrix, _ = write_matrix(tmp_path, text)
    assert matrix is not None
    assert matrix.rules[0].source_names == ("clients", "192.0.2.0/24", "2001:db8::7")


def test_a_matrix_without_rules_keeps_its_path(tmp_path: Path) -> None:
    """Kills X16 (an empty matrix without its path): a rule refused against it names the
    file (`no rule ... in the Flow Matrix (path)`), as for a matrix with rules."""
    for empty in ("rules:\n", "rules: ~\n", "rules: []\n"):
        path, matrix, _ = write_matrix(tmp_path, empty)
        assert matrix is not None and matrix.rules == ()
        assert matrix.path == path
