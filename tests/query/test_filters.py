"""Each Sessions-page filter against answers worked out by hand on tests/query/run_dirs.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from obserae_forensics import query
from obserae_forensics.errors import UsageError
from obserae_forensics.query import SessionQuery

from .run_dirs import at, write_run

ALL = ["s1", "s2", "s3", "s4", "s5a", "s5b", "s6", "s7", "s8"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> query.Run:
    return query.load(write_run(tmp_path_factory.mktemp("run") / "hand"))


def ids(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["session_id"].tolist())


def shown(run: query.Run, mask: pd.Series) -> list[str]:
    return ids(run.sessions.loc[mask])


def test_last_counts_back_from_the_data_end_not_the_wall_clock(run: query.Run) -> None:
    assert run.data_end == at("11:00:00")
    # [10:00, 11:00]: s5a ended at 09:00, every other session overlaps
    hour = query.time_window(run.sessions, last=3600, data_end=run.data_end)
    assert shown(run, hour) == [i for i in ALL if i != "s5a"]
    # [10:50, 11:00]: s3 (10:50:00 exactly), s4, s5b (still going), s7, s8
    assert ids(SessionQuery().last(600).apply(run)) == ["s3", "s4", "s5b", "s7", "s8"]


def test_window_keeps_sessions_that_overlap_it(run: query.Run) -> None:
    # 09:30-09:31: only the long database session s5b (09:00:10 - 10:59:00) is inside
    mask = query.time_window(run.sessions, "2024-03-01T09:30:00Z", "2024-03-01 09:31")
    assert shown(run, mask) == ["s5b"]
    # open-ended start: everything that had begun by 08:50
    assert shown(run, query.time_window(run.sessions, end="2024-03-01T08:50:00Z")) == ["s5a"]


def test_window_bounds_are_inclusive(run: query.Run) -> None:
    # s1 ends at 10:00:38 exactly, s2 starts at 10:10:00 exactly
    mask = query.time_window(run.sessions, at("10:00:38"), at("10:10:00"))
    assert shown(run, mask) == ["s1", "s2", "s5b"]


def test_last_without_a_data_end_or_with_start_is_refused(run: query.Run) -> None:
    with pytest.raises(UsageError, match=r"data_window\.end"):
        query.time_window(run.sessions, last=60)
    with pytest.raises(UsageError, match="either last= or start/end"):
        query.time_window(run.sessions, start=at("10:00:00"), last=60, data_end=run.data_end)


def test_window_applies_to_flows_and_matches_too(run: query.Run) -> None:
    flows = query.time_window(run.flows, last=600, data_end=run.data_end)
    # records at 10:50:00 (s3 both), 10:50:01 (s4 both), 10:59:00 (s5b's b->a), 10:59:30,
    # 10:59:59 (s7), 10:59:58 (s8 both)
    assert sorted(run.flows.loc[flows, "session_id"]) == [
        "s3",
        "s3",
        "s4",
        "s4",
        "s5b",
        "s7",
        "s7",
        "s8",
        "s8",
    ]
    assert run.matches is not None
    matches = query.time_window(run.matches, last=600, data_end=run.data_end)
    assert run.matches.loc[matches, "session_id"].tolist() == ["s5b"]


def test_entity_by_address_cidr_and_name_on_either_side(run: query.Run) -> None:
    chart = run.cartography
    assert shown(run, query.entity(run.sessions, "10.0.10.12", cartography=chart)) == [
        "s1",
        "s4",
        "s8",
    ]
    assert shown(run, query.entity(run.sessions, "10.0.0.0/24", cartography=chart)) == [
        "s1",
        "s2",
        "s3",
        "s4",
        "s5a",
        "s5b",
        "s7",
        "s8",
    ]
    assert shown(run, query.entity(run.sessions, "databases", cartography=chart)) == ["s5a", "s5b"]
    assert shown(run, query.entity(run.sessions, "2001:db8::/32", cartography=chart)) == ["s6"]
    # found by an audit: IPv4 is held mapped into ::ffff:0:0/96, and ::/0 took it in too
    assert shown(run, query.entity(run.sessions, "::/0", cartography=chart)) == ["s6"]
    assert shown(run, query.entity(run.sessions, "any", cartography=chart)) == ALL
    # resolver 10.0.0.53 is in lan, the groups nest: servers = api + resolver + databases
    assert shown(run, query.entity(run.sessions, "servers", side="server", cartography=chart)) == [
        "s1",
        "s2",
        "s4",
        "s5a",
        "s5b",
        "s8",
    ]


def test_entity_on_one_side(run: query.Run) -> None:
    chart = run.cartography
    lan_servers = query.entity(run.sessions, "lan", side="server", cartography=chart)
    assert shown(run, lan_servers) == ["s2"]
    assert shown(run, query.entity(run.sessions, "10.0.0.42", side="a", cartography=chart)) == [
        "s1",
        "s2",
        "s7",
    ]
    assert shown(run, query.entity(run.sessions, "10.0.0.42", side="b", cartography=chart)) == []


def test_builtin_names_work_without_a_cartography(run: query.Run) -> None:
    # the seed's "internal hosts talking to the public internet"
    view = SessionQuery().entity("internal4").entity("internet4", side="server")
    assert ids(view.apply(run)) == ["s3", "s7"]
    internet = query.entity(run.sessions, "internet4", side="server")
    assert shown(run, internet) == ["s3", "s7"]


def test_entity_on_flows_by_src_and_dst(run: query.Run) -> None:
    mask = query.entity(run.flows, "93.184.216.34", side="dst")
    assert run.flows.loc[mask, ["session_id", "direction"]].values.tolist() == [["s3", "ab"]]


def test_unknown_entity_name_and_bad_side_are_usage_errors(run: query.Run) -> None:
    with pytest.raises(UsageError, match="unknown name 'nosuchhost'"):
        query.entity(run.sessions, "nosuchhost", cartography=run.cartography)
    with pytest.raises(UsageError, match="unknown side 'left'"):
        query.entity(run.sessions, "lan", side="left", cartography=run.cartography)
    with pytest.raises(UsageError, match="host bits set"):
        query.entity(run.sessions, "10.0.0.1/8")


def test_port_protocol_and_service(run: query.Run) -> None:
    assert shown(run, query.protocol(run.sessions, "udp")) == ["s2", "s7"]
    assert shown(run, query.protocol(run.sessions, "ICMP", 17)) == ["s2", "s6", "s7"]
    assert shown(run, query.port(run.sessions, 443, "3000-3999")) == ["s1", "s4"]
    assert shown(run, query.port(run.sessions, 123, side="client")) == ["s7"]
    assert shown(run, query.port(run.sessions, 5353, side="either")) == ["s2"]
    assert shown(run, query.service(run.sessions, "tcp/22,80")) == ["s3", "s8"]
    assert shown(run, query.service(run.sessions, "udp/443")) == []
    # found by an audit: ICMP's port 0 fell inside `0-1023` (and IGMP's, EIGRP's)
    assert "s6" not in shown(run, query.port(run.sessions, "0-1023", side="either"))
    with pytest.raises(UsageError, match="icmp has no ports"):
        query.service(run.sessions, "icmp/0")
    with pytest.raises(UsageError, match="ports need a protocol"):
        query.service(run.sessions, "any/53")
    # SessionQuery chains it too (the README said so, and it had no such method)
    view = SessionQuery().service("tcp/22", "tcp/80")
    assert shown(run, view.mask(run)) == ["s3", "s8"]
    assert view.describe() == "service in (tcp/22, tcp/80)"
    with pytest.raises(UsageError, match="bad port"):
        query.port(run.sessions, "70000")


def test_protocol_on_tables_with_only_a_keyword_or_a_number(run: query.Run) -> None:
    assert run.consolidated is not None
    keyword_only = run.consolidated.drop(columns="protocol_number")
    assert ids(
        keyword_only.rename(columns={"consolidated_id": "session_id"}).loc[
            query.protocol(keyword_only, "udp")
        ]
    ) == ["s2", "s7"]
    tcp_flows = run.flows.loc[query.protocol(run.flows, "tcp")]
    assert sorted(set(tcp_flows["session_id"])) == ["s1", "s3", "s4", "s5a", "s5b", "s8"]


def test_every_keyword_the_protocol_column_writes_is_a_protocol() -> None:
    """An audit: `protocol("EIGRP")` was refused though the sessions table writes EIGRP
    (HOPOPT, GGP, EGP, IGP too): the queries and the rules knew a short list of names."""
    from obserae_forensics.protocols import PROTOCOL_KEYWORDS

    numbers = list(PROTOCOL_KEYWORDS)
    frame = pd.DataFrame(
        {"protocol": [PROTOCOL_KEYWORDS[n] for n in numbers], "protocol_number": numbers}
    )
    for number, keyword in PROTOCOL_KEYWORDS.items():
        for name in (keyword, keyword.lower()):
            if name.lower() in ("ipv4", "ipv6"):  # tunnels: a rule means the IP version
                with pytest.raises(UsageError, match=f"ambiguous.*protocol {number}, a tunnel"):
                    query.protocol(frame, name)
                continue
            assert frame["protocol_number"][query.protocol(frame, name)].tolist() == [number]
    # the short names stay
    assert frame["protocol_number"][query.protocol(frame, "icmpv6", "ospf")].tolist() == [58, 89]


def test_state_and_close_reason(run: query.Run) -> None:
    assert shown(run, query.state(run.sessions, "active", "half_open")) == ["s5b", "s8"]
    scans = query.state(run.sessions, "closed") & query.close_reason(
        run.sessions, "no_reply", "rejected"
    )
    assert shown(run, scans) == ["s3", "s4", "s7"]
    with pytest.raises(UsageError, match="unknown state 'open'"):
        query.state(run.sessions, "open")
    with pytest.raises(UsageError, match="unknown close reason 'timeout'"):
        query.close_reason(run.sessions, "timeout")


def test_exporter_with_and_without_domain(run: query.Run) -> None:
    assert shown(run, query.exporter(run.sessions, "192.0.2.2")) == ["s6"]
    assert shown(run, query.exporter(run.sessions, "192.0.2.2/256")) == ["s6"]
    assert shown(run, query.exporter(run.sessions, "192.0.2.2/0")) == []
    assert len(run.sessions.loc[query.exporter(run.sessions, "192.0.2.1")]) == 8


def test_unmatched_only_is_closed_sessions_without_a_match(run: query.Run) -> None:
    # s8 is half-open and s5b active: not finished, so not "unmatched" even with no rule
    assert shown(run, query.unmatched(run.sessions, run.matches)) == ["s3", "s4", "s6", "s7"]
    assert ids(SessionQuery().last(600).unmatched().apply(run)) == ["s3", "s4", "s7"]
    # the same question about conversations the capture cut off: s8 never had a rule
    assert shown(run, query.unmatched(run.sessions, run.matches, ("active", "half_open"))) == ["s8"]
    assert SessionQuery().unmatched("active").describe() == "unmatched (active)"


def test_unmatched_needs_matches(tmp_path: Path) -> None:
    bare = query.load(write_run(tmp_path / "bare", with_matches=False))
    assert bare.matches is None
    with pytest.raises(UsageError, match="without --flow-matrix"):
        SessionQuery().unmatched().apply(bare)


def test_rule_filter(run: query.Run) -> None:
    assert shown(run, query.rule(run.sessions, run.matches, "db-access", "lan-dns")) == [
        "s2",
        "s5a",
        "s5b",
    ]


def test_query_composes_like_the_seed_queries(run: query.Run) -> None:
    # "Likely TCP scans or blocked attempts", the last hour of the data
    scans = (
        SessionQuery()
        .last(3600)
        .state("closed")
        .close_reason("no_reply", "rejected")
        .protocol("tcp")
    )
    assert ids(scans.apply(run)) == ["s3", "s4"]
    assert scans.describe() == (
        "LAST 3600 AND protocol in (tcp) AND state in (closed) "
        "AND close_reason in (no_reply, rejected)"
    )
    # "Recent sessions touching a known host or group"
    assert ids(SessionQuery().last(3600).entity("databases").apply(run)) == ["s5b"]
    # masks compose with & | ~ as well
    either = query.port(run.sessions, 53) | query.port(run.sessions, 5432)
    assert shown(run, either & ~query.state(run.sessions, "active")) == ["s2", "s5a"]


def test_query_is_immutable(run: query.Run) -> None:
    base = SessionQuery().state("closed")
    narrowed = base.port(443)
    assert base.ports == ()
    assert ids(base.apply(run)) == ["s1", "s2", "s3", "s4", "s5a", "s6", "s7"]
    assert ids(narrowed.apply(run)) == ["s1"]


def test_filters_keep_the_frame_index(run: query.Run) -> None:
    shuffled = run.sessions.sample(frac=1.0, random_state=3)
    lan = query.entity(shuffled, "lan", cartography=run.cartography)
    mask = query.state(shuffled, "closed") & lan
    assert mask.index.equals(shuffled.index)
    assert ids(shuffled.loc[mask]) == ["s1", "s2", "s3", "s4", "s5a", "s7"]


def test_missing_addresses_never_match(run: query.Run) -> None:
    frame = pd.DataFrame(
        {
            "ip_a": pd.array(["10.0.0.1", None], dtype="string"),
            "ip_b": pd.array([None, "10.0.0.2"], dtype="string"),
        }
    )
    assert query.entity(frame, "10.0.0.2").tolist() == [False, True]


def test_times_words_durations_and_tables_a_filter_cannot_read_are_said(run: query.Run) -> None:
    """Found by an audit: a number as a time was read as nanoseconds after 1970, `now` took
    the wall clock, last("1h") raised a ValueError, filters of sessions' columns raised a
    KeyError on other tables, and last= on an empty run raised for want of an end."""
    with pytest.raises(UsageError, match="read as nanoseconds"):
        SessionQuery().window(1308930700, None).apply(run)
    with pytest.raises(UsageError, match="not of the wall clock"):
        SessionQuery().window(None, "now").apply(run)
    assert ids(SessionQuery().last("1h").apply(run)) == ids(SessionQuery().last(3600).apply(run))
    for view in (
        SessionQuery().state("closed"),
        SessionQuery().close_reason("fin"),
        SessionQuery().unmatched(),
    ):
        with pytest.raises(UsageError, match="which this table lacks"):
            view.apply(run, run.flows)
    # the sides the table has (a review: port(53) of the flows)
    with pytest.raises(UsageError, match="lacks; it has side='src' or side='dst'"):
        SessionQuery().port(53).apply(run, run.flows)
    with pytest.raises(UsageError, match="exporter\\(\\) needs column exporter"):
        query.exporter(run.flows.drop(columns="exporter"), "192.0.2.1")
    empty = run.sessions.iloc[0:0]
    assert len(query.time_window(empty, last=60, data_end=None)) == 0


def test_names_the_run_does_not_know_are_refused_not_an_empty_answer(run: query.Run) -> None:
    """Found by an audit: rule("lab-dnss") and exporter("127.0.0.2") returned no rows, which
    a report could cite as "no session matched" where entity() refuses an unknown name;
    an IPv6 exporter written in capitals matched nothing."""
    assert ids(SessionQuery().rule("db-access").apply(run)) == ["s5a", "s5b"]
    with pytest.raises(UsageError, match=r"no rule 'db-acess' in the Flow Matrix .*db-access"):
        SessionQuery().rule("db-acess").apply(run)
    with pytest.raises(
        UsageError,
        match=r"no exporter '192.0.2.3' in this run \(its "
        r"exporters: 192.0.2.1, 192.0.2.2\)",
    ):
        SessionQuery().exporter("192.0.2.3").apply(run)
    assert ids(SessionQuery().exporter("192.0.2.2/256").apply(run)) == ["s6"]
    # a domain the exporter never sent from (a second audit)
    with pytest.raises(
        UsageError,
        match=r"no exporter '192.0.2.2/7' in this run "
        r"\(192.0.2.2 sent from domain\(s\) 256\)",
    ):
        SessionQuery().exporter("192.0.2.2/7").apply(run)
    for odd in ("192.0.2.2/\u0666", "192.0.2.2/\u00b2"):
        with pytest.raises(UsageError, match="the domain after / is a number"):
            query.exporter(run.sessions, odd)
    v6 = run.sessions.assign(
        exporter=run.sessions["exporter"].astype(str).replace("192.0.2.2", "2001:db8::a")
    )
    assert shown(run, query.exporter(v6, "2001:DB8:0::A")) == ["s6"]


@pytest.mark.parametrize(
    ("end", "last"),
    [
        ("2024-03", "2024-03-31T23:59:59.999999"),
        ("2024/03", "2024-03-31T23:59:59.999999"),
        ("2024-02", "2024-02-29T23:59:59.999999"),
        ("2023-02", "2023-02-28T23:59:59.999999"),
        ("2024", "2024-12-31T23:59:59.999999"),
        ("20240229", "2024-02-29T23:59:59.999999"),
        (" 2023 ", "2023-12-31T23:59:59.999999"),
        ("9999", "9999-12-31T23:59:59.999999"),
        ("9999-12", "9999-12-31T23:59:59.999999"),
        ("2024-03-01T10", "2024-03-01T10:00:00"),
    ],
)
def test_a_month_or_a_year_as_the_end_is_all_of_it(end: str, last: str) -> None:
    """A month or a year as a window's end was its first midnight (`2024-03` stopped at
    March 1st 00:00), where a day was the whole day: now each is up to its last
    microsecond, February's 29th in a leap year, and the year 9999's end, which calendar
    arithmetic refused, included; a time of day, the hour alone too, stays an instant."""
    assert query.window_bounds("2000", end)[1] == pd.Timestamp(last, tz="UTC")


def test_windows_as_a_responder_writes_them(run: query.Run) -> None:
    """Found by an audit: a day given as the end meant its midnight, so window(day, day)
    held nothing; nfdump's time text, which sessionize --from takes, was refused; last()
    refused a Timedelta that time_window takes; the seed's source/destination sides were
    unknown."""
    assert ids(SessionQuery().window("2024-03-01", "2024-03-01").apply(run)) == ALL
    assert ids(SessionQuery().window("2024/03/01", "2024/03/01").apply(run)) == ALL
    assert ids(SessionQuery().window("2024-02-29", "2024-02-29").apply(run)) == []
    assert ids(SessionQuery().window("2024-03", "2024-03").apply(run)) == ALL
    assert ids(SessionQuery().window("2024", "2024").apply(run)) == ALL
    assert ids(SessionQuery().window("2024-02", "2024-02").apply(run)) == []
    # a datetime.date is the same day (as an end it was its midnight: a second audit)
    assert ids(SessionQuery().window(date(2024, 3, 1), date(2024, 3, 1)).apply(run)) == ALL
    assert ids(SessionQuery().window("2024/03/01.10:50:00", "2024/03/01.10:50").apply(run)) == [
        "s3",
        "s5b",
    ]
    assert ids(SessionQuery().last(pd.Timedelta(minutes=10)).apply(run)) == ids(
        SessionQuery().last(600).apply(run)
    )
    assert (
        shown(run, query.entity(run.sessions, "10.0.0.0/24", side="source"))
        == shown(run, query.entity(run.sessions, "10.0.0.0/24", side="client"))
        != []
    )
    assert shown(run, query.port(run.sessions, 443, side="destination")) == ["s1"]
    assert (
        query.entity(run.flows, "10.0.10.12", side="destination").sum()
        == query.entity(run.flows, "10.0.10.12", side="dst").sum()
        > 0
    )
