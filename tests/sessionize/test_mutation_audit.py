"""Behaviour of the settings, of `sessionize`'s options and of the Python side of the
sessionizer, Cartography and address sets that no test pinned, found by a mutation audit
(the thirty-fifth session's: 62 small changes, 34 of which no test noticed, 29 of those
real gaps and 5 equivalent; most at an exact boundary: 1000 years, 2**40 sessions, a grace
of 0, port 1023, ICMP type 0, TIME_LIMIT_US, the address 0.0.0.0). Each test fails with its
change applied and names it. The kernel's own are in tests/sessionize/test_rule_boundaries.py,
matching's and consolidation's in tests/test_mutation_audit.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.errors import UsageError
from obserae_forensics.matching.address_sets import ADDRESS_TOP, AddressSet
from obserae_forensics.pipeline import ReadOptions
from obserae_forensics.sessionize import SessionPolicy, load_policy, parse_duration, policy_settings
from obserae_forensics.sessionize.policy import MAX_DURATION_US, MAX_OPEN_SESSIONS
from obserae_forensics.times import TIME_LIMIT_US
from tests.sessionize.scenario import rec, run

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "sf_v9_varsvc.pcap"
runner = CliRunner()


# --- sessionize/policy.py: durations ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "us"),
    [("7us", 7), ("7µs", 7), ("250 us", 250), (".5s", 500_000), ("1.001s", 1_001_000)],
)
def test_microseconds_and_a_leading_point_are_durations(text: str, us: int) -> None:
    """Kills M01 (`_UNITS_US["us"]: 1` -> `1_000`), M02 (the `µs` unit dropped from the
    pattern) and M15 (`|\\.[0-9]+` dropped from the pattern): durations are microseconds
    inside the package (policy.py), and `us`/`µs` are the units that say so exactly."""
    assert parse_duration(text, "sessions.grace") == us
    assert load_policy(None, {"sessions.idle.udp": text}).idle_udp_us == us


def test_a_fraction_is_rounded_to_the_nearest_microsecond_not_truncated() -> None:
    """Kills M11 (`round(micros)` -> `int(micros)`): 1.001 s is 1000999.9999999999 µs as a
    float; truncated, `--grace 1.001s` ran a grace one microsecond short of what was asked."""
    assert parse_duration("1.001s", "sessions.grace") == 1_001_000
    assert parse_duration("1.001ms", "sessions.grace") == 1_001
    assert parse_duration(1.001, "sessions.grace") == 1_001_000


def test_exactly_1000_years_is_a_duration_and_a_microsecond_more_is_not() -> None:
    """Kills M03 (`__post_init__` `value > MAX_DURATION_US` -> `>=`) and M04 (`_whole_us`
    `micros > MAX_DURATION_US` -> `>=`): README, Settings, refuses "a duration over 1000
    years"; 1000 years itself is one."""
    assert MAX_DURATION_US == 365_000 * 86_400 * 1_000_000
    assert parse_duration("365000d", "sessions.hard_timeout") == MAX_DURATION_US
    assert SessionPolicy(hard_timeout_us=MAX_DURATION_US).hard_timeout_us == MAX_DURATION_US
    policy = load_policy(None, {"sessions.hard_timeout": "365000d"})
    assert policy.hard_timeout_us == MAX_DURATION_US
    with pytest.raises(UsageError, match=r"^sessions\.hard_timeout: at most 1000 years"):
        SessionPolicy(hard_timeout_us=MAX_DURATION_US + 1)
    with pytest.raises(UsageError, match=r"^sessions\.hard_timeout: at most 1000 years"):
        parse_duration("365000.001d", "sessions.hard_timeout")


def test_a_grace_of_zero_is_allowed_however_it_is_written(tmp_path: Path) -> None:
    """Kills M08 (`__post_init__` zero refused for the grace too), M09 (`load_policy`
    `us == 0 and name != "sessions.grace"` -> `us == 0`) and M10 (a number of seconds
    `seconds < 0` -> `<= 0`): the grace is `>= 0` where every other duration is `> 0`
    (README: "zero where it must be positive"); a grace of 0 replays without any slack."""
    assert SessionPolicy(grace_us=0).grace_us == 0
    assert load_policy(None, {"sessions.grace": "0s"}).grace_us == 0
    assert load_policy(None, {"sessions.grace": 0}).grace_us == 0
    path = tmp_path / "settings.yaml"
    path.write_text("sessions:\n  grace: 0\n")
    assert load_policy(path).grace_us == 0
    with pytest.raises(UsageError, match=r"^sessions\.idle\.udp: must be > 0"):
        load_policy(None, {"sessions.idle.udp": 0})


def test_the_manifest_gives_durations_in_seconds_with_their_fractions() -> None:
    """Kills M43 (`policy_settings` `/ SECOND_US` -> `// SECOND_US`): manifest.json gives the
    settings in force in seconds (README, Outputs); a 500ms grace is 0.5, not 0."""
    settings = policy_settings(load_policy(None, {"sessions.grace": "500ms"}))
    assert settings["sessions.grace"] == 0.5
    assert policy_settings(SessionPolicy(idle_tcp_half_open_us=1))["sessions.idle.tcp_half_open"]


def test_a_duration_that_is_no_number_says_so() -> None:
    """Kills M45 (the `not math.isfinite(seconds)` check dropped): a NaN given in code was
    refused as "at most 1000 years, got nan", an error that names the wrong mistake."""
    for value in (float("nan"), float("inf")):
        with pytest.raises(UsageError, match=r"^sessions\.grace: expected a finite duration"):
            load_policy(None, {"sessions.grace": value})


# --- sessionize/policy.py: the cap, replay, and policies built in code ------------------


def test_a_cap_of_exactly_2_to_the_40_sessions_is_allowed() -> None:
    """Kills M05 (`value > MAX_OPEN_SESSIONS / 1000` -> `>=`): README, Settings, refuses "a
    cap over 2**40 sessions"; 2**40 itself is a cap."""
    assert SessionPolicy(max_open_ksessions=MAX_OPEN_SESSIONS / 1000).max_open_sessions == 2**40
    with pytest.raises(UsageError, match=r"^sessions\.max_open_ksessions: at most"):
        SessionPolicy(max_open_ksessions=MAX_OPEN_SESSIONS / 1000 + 0.001)


@pytest.mark.parametrize("thousands", [0.0025, 1.0000005, "0.0015"])
def test_a_cap_of_a_fraction_of_a_session_is_refused(thousands: float | str) -> None:
    """Kills M07 (the whole-sessions check `abs(sessions - round(sessions)) > 1e-6`
    dropped): policy.py, "the cap itself must come out as a whole number of sessions";
    0.0025 thousand (2.5 sessions) was silently run as 2."""
    with pytest.raises(UsageError, match=r"^sessions\.max_open_ksessions: must allow a whole"):
        load_policy(None, {"sessions.max_open_ksessions": thousands})


def test_a_policy_built_in_code_gets_the_replay_and_type_checks() -> None:
    """Kills M12 (the `__post_init__` replay check dropped) and M13 (`not isinstance(value,
    int) or isinstance(value, bool)` -> `isinstance(value, bool)`): "a policy built in code
    gets the same checks as one read from YAML" (policy.py); a float or a text reached the
    kernel's int64 deadlines, and an unknown replay mode ran as arrival."""
    with pytest.raises(UsageError, match=r"^sessions\.replay: expected one of arrival, event"):
        SessionPolicy(replay="backwards")
    for value in (1.5, "30s"):
        with pytest.raises(UsageError, match=r"^sessions\.grace: expected whole microseconds"):
            SessionPolicy(grace_us=value)  # type: ignore[arg-type]


def test_a_files_bad_replay_mode_names_the_file(tmp_path: Path) -> None:
    """Kills M16 (`load_policy`'s replay check dropped, left to `__post_init__`): README,
    Settings, anything invalid stops the run "with the setting's name"; from a file, the
    file's name comes first, as for every other setting."""
    path = tmp_path / "settings.yaml"
    path.write_text("sessions:\n  replay: backwards\n")
    with pytest.raises(UsageError, match=rf"^{path}: sessions\.replay: expected one of"):
        load_policy(path)


@pytest.mark.parametrize("value", ["false", "0", "''"])
def test_a_sessions_block_that_is_no_mapping_is_refused(tmp_path: Path, value: str) -> None:
    """Kills M44 (`document.get("sessions") is None` -> `not document.get("sessions")`):
    only `sessions:` alone (null) sets nothing (README, Settings); `sessions: false` is a
    mistake, not the defaults."""
    path = tmp_path / "settings.yaml"
    path.write_text(f"sessions: {value}\n")
    with pytest.raises(UsageError, match=rf"^{path}: sessions: expected a mapping"):
        load_policy(path)


def test_true_is_no_cap(tmp_path: Path) -> None:
    """Kills M46 (`_cap_sessions` `isinstance(value, bool) or` dropped): `true` is an int to
    Python; `max_open_ksessions: true` ran a cap of 1000 sessions per exporter without a
    word, where README, Settings, stops anything invalid with the setting's name."""
    path = tmp_path / "settings.yaml"
    path.write_text("sessions:\n  max_open_ksessions: true\n")
    with pytest.raises(UsageError, match=r"max_open_ksessions: expected a number of thousands"):
        load_policy(path)
    with pytest.raises(UsageError, match=r"^sessions\.max_open_ksessions: expected a number"):
        SessionPolicy(max_open_ksessions=True)


# --- cli.py and pipeline.py: options ------------------------------------------------------


def test_every_idle_option_reaches_its_own_setting(tmp_path: Path) -> None:
    """Kills M17 (`--idle-udp` and `--idle-icmp` swapped in the overrides): README, Settings,
    each setting is also a CLI option; manifest.json gives the settings in force."""
    options = {
        "--hard-timeout": ("sessions.hard_timeout", "11m", 660),
        "--grace": ("sessions.grace", "12s", 12),
        "--idle-tcp-established": ("sessions.idle.tcp_established", "13s", 13),
        "--idle-tcp-half-open": ("sessions.idle.tcp_half_open", "14s", 14),
        "--idle-udp": ("sessions.idle.udp", "15s", 15),
        "--idle-icmp": ("sessions.idle.icmp", "16s", 16),
        "--idle-other": ("sessions.idle.other", "17s", 17),
        "--replay": ("sessions.replay", "event", "event"),
    }
    out = tmp_path / "run"
    arguments = [a for option, (_, text, _) in options.items() for a in (option, text)]
    result = runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(out), "-q", *arguments])
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert {name: settings[name] for name, _, _ in options.values()} == {
        name: shown for name, _, shown in options.values()
    }


def test_a_settings_file_that_gives_the_defaults_sets_something(tmp_path: Path) -> None:
    """Kills M47 (the "sets nothing" warning when the policy equals the defaults instead of
    when the file holds no setting): README, Settings, the warning is for a file "that sets
    nothing (empty, every setting commented out, `sessions:` alone)"; the seed's block
    written out sets every setting, to the values that are also the defaults."""
    config = tmp_path / "settings.yaml"
    config.write_text(
        "sessions:\n  hard_timeout: 15m\n  grace: 30s\n  max_open_ksessions: 500\n"
        "  replay: arrival\n  idle: {tcp_established: 60s, tcp_half_open: 5s, udp: 30s,"
        " icmp: 10s, other: 60s}\n"
    )
    result = runner.invoke(
        app,
        ["sessionize", str(FIXTURE), "--out", str(tmp_path / "run"), "-q", "--config", str(config)],
    )
    assert result.exit_code == 0, result.output
    assert "sets nothing" not in result.stderr


def test_a_batch_size_over_2_to_the_24_stops_the_run(tmp_path: Path) -> None:
    """Kills M18 (`--batch-size` `max=1 << 24` -> `max=1 << 32`): README, Settings,
    "`--batch-size` over 2**24" stops the run with exit code 2 before any input is read."""
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["sessionize", str(FIXTURE), "--out", str(out), "-q", "--batch-size", str(2**24 + 1)]
    )
    assert result.exit_code == 2
    assert "--batch-size" in result.stderr and not out.exists()


def test_a_window_of_one_instant_is_no_usage_error() -> None:
    """Kills M21 (`ReadOptions` `start > end` -> `start >= end`): README, `--from/--to` keep
    the records inside the window, "both ends included": `--from T --to T` holds the
    records of instant T; only a `--from` after `--to` is a usage error."""
    assert ReadOptions(window=(5_000_000, 5_000_000)).window == (5_000_000, 5_000_000)
    with pytest.raises(UsageError, match="--from is later than --to"):
        ReadOptions(window=(5_000_001, 5_000_000))


def test_the_grace_given_is_the_grace_consolidation_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills M22 (`Consolidation(config.policy.grace_us)` -> `...idle_udp_us)`): README,
    Consolidated sessions, sessions overlap "widened by `sessions.grace`"; with the
    defaults the grace and the UDP idle timeout are both 30 s, so only another grace shows
    which one consolidation was given."""
    from obserae_forensics.matching import consolidate
    from obserae_forensics.pipeline import SessionizeConfig, sessionize_inputs
    from obserae_forensics.report import RunReport

    given: list[int] = []

    class Recording(consolidate.Consolidation):
        def __init__(self, grace_us: int, *args: object, **kwargs: object) -> None:
            given.append(grace_us)
            super().__init__(grace_us, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(consolidate, "Consolidation", Recording)
    policy = load_policy(None, {"sessions.grace": "7s"})
    config = SessionizeConfig(inputs=(FIXTURE,), out=tmp_path / "run", policy=policy)
    sessionize_inputs(config, RunReport())
    assert given == [7_000_000]


def test_the_cartographys_services_name_the_server_in_a_run(tmp_path: Path) -> None:
    """Kills M54 (`services = ... config.cartography.declared_services` -> `None`): README,
    Orientation and server side, a Cartography-declared service names the server (method
    `cartography`, 0.80) ahead of a known service port; the bundled Cartography declares
    the resolver's udp/53, whose DNS sessions fell back to `service_port` without it."""
    import pyarrow.parquet as pq

    from obserae_forensics.matching import load_cartography
    from obserae_forensics.pipeline import SessionizeConfig, sessionize_inputs
    from obserae_forensics.report import RunReport

    out = tmp_path / "run"
    cartography = load_cartography(FIXTURE.parent / "cartography.yaml")
    config = SessionizeConfig(
        inputs=(FIXTURE,), out=out, policy=SessionPolicy(), cartography=cartography
    )
    sessionize_inputs(config, RunReport())
    dns = [
        (s["role_method"], s["role_confidence"])
        for s in pq.read_table(out / "sessions.parquet").to_pylist()
        if (s["server_ip"], s["server_port"]) == ("172.16.238.2", 53)
    ]
    assert dns and set(dns) == {("cartography", 0.8)}


# --- sessionize/output.py and keys.py --------------------------------------------------


def test_an_echo_reply_keeps_its_icmp_type_zero() -> None:
    """Kills M23 (icmp_type shown when `first_dst_port >= 0` -> `> 0`): README, sessions
    table, icmp_type/icmp_code are null only when the first record's forward half carried
    nothing; an echo reply is type 0 code 0 (dst_port 0), a port unreachable 3/3."""
    sessions, _, _ = run(
        [
            rec(0, src="10.0.0.1", dst="10.0.0.2", sport=0, dport=0, proto=1),
            rec(1, src="10.0.0.3", dst="10.0.0.4", sport=0, dport=0x0303, proto=1),
            rec(2, src="2001:db8::1", dst="2001:db8::2", sport=0, dport=0x8100, proto=58),
        ]
    )
    shown = {(s["ip_a"], s["icmp_type"], s["icmp_code"]) for s in sessions.to_pylist()}
    assert shown == {("10.0.0.1", 0, 0), ("10.0.0.3", 3, 3), ("2001:db8::1", 129, 0)}


def test_port_1023_is_a_service_port() -> None:
    """Kills M24 (`known_service_ports` `table[1:1024]` -> `table[1:1023]`): README, server
    side rule 3, a known service port is one "1 to 1023, or a registered server port";
    a reply from port 1023 to an ephemeral port names the 1023 side the server."""
    sessions, _, _ = run(
        [rec(0, src="10.0.0.2", sport=1023, dst="10.0.0.1", dport=50000, proto=17)]
    )
    (session,) = sessions.to_pylist()
    assert (session["role_method"], session["server_port"]) == ("service_port", 1023)
    assert session["client_port"] == 50000


# --- sessionize/sessionizer.py ---------------------------------------------------------


def test_a_record_at_exactly_the_time_limit_is_replayed() -> None:
    """Kills M41 (`feed()` `times.max() > TIME_LIMIT_US` -> `>=`): times.py, the readers
    keep times up to TIME_LIMIT_US and the sessionizer "works up to it and refuses what
    lies beyond" (test_rules); a record at the limit itself is replayed, not refused."""
    edge = {**rec(0), "first_seen": TIME_LIMIT_US - 10_000_000, "last_seen": TIME_LIMIT_US}
    sessions, flows, _ = run([edge])
    assert sessions.num_rows == 1 and flows.num_rows == 1
    assert sessions.column("last_seen_at").cast("int64").to_pylist() == [TIME_LIMIT_US]


# --- matching/address_sets.py ----------------------------------------------------------


def test_the_complement_keeps_a_last_single_address() -> None:
    """Kills M33 (`complement` `if cursor <= last` -> `cursor < last`): the complement of
    every address but the very last one is that address, and of all but one inside a
    universe, that one; a one-address gap at the end was lost."""
    everything_but_top = AddressSet.from_intervals([(0, ADDRESS_TOP - 1)])
    assert everything_but_top.complement().intervals == ((ADDRESS_TOP, ADDRESS_TOP),)
    within = AddressSet.from_intervals([(10, 20)])
    assert AddressSet.from_intervals([(10, 19)]).complement(within).intervals == ((20, 20),)


def test_the_address_0_0_0_0_alone_is_ipv4() -> None:
    """Kills M62 (`families` `last >= V4_MAPPED_BASE` -> `>`): IPv4 is held mapped from
    ::ffff:0.0.0.0 (address_sets.py), so 0.0.0.0 itself is an IPv4 address; without a
    family, a Flow Matrix rule naming it alone was refused as one no session can match."""
    assert AddressSet.from_networks(["0.0.0.0"]).families == {4}
    assert AddressSet.from_networks(["0.0.0.0/32", "2001:db8::/32"]).families == {4, 6}
