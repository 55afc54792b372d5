"""Settings: the seed's defaults and names, durations, files, overrides, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from obserae_forensics.errors import UsageError
from obserae_forensics.sessionize import (
    SessionPolicy,
    load_policy,
    parse_duration,
    policy_settings,
)

SEED_BLOCK = """\
sessions:
  hard_timeout: 15m
  grace: 30s
  max_open_ksessions: 500
  idle:
    tcp_established: 60s
    tcp_half_open: 5s
    udp: 30s
    icmp: 10s
    other: 60s
"""


def test_the_seed_block_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(SEED_BLOCK)
    assert load_policy(path, {}) == SessionPolicy() == load_policy(None, {})


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("15m", 900_000_000),
        ("30s", 30_000_000),
        ("1h", 3_600_000_000),
        ("500ms", 500_000),
        ("2d", 172_800_000_000),
        ("2.5s", 2_500_000),
        ("90", 90_000_000),
        (45, 45_000_000),
        (0.25, 250_000),
    ],
)
def test_durations(text: str | float, us: int) -> None:
    assert parse_duration(text, "sessions.grace") == us


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("sessions:\n  grace: 10s\n  idle:\n    udp: 2m\n")
    policy = load_policy(
        path, {"sessions.grace": "1s", "sessions.replay": "event", "sessions.max_open_ksessions": 2}
    )
    assert (policy.grace_us, policy.idle_udp_us, policy.replay, policy.max_open_sessions) == (
        1_000_000,
        120_000_000,
        "event",
        2000,
    )


def test_settings_use_the_seed_names_in_seconds() -> None:
    settings = policy_settings(SessionPolicy())
    assert settings == {
        "sessions.hard_timeout": 900.0,
        "sessions.grace": 30.0,
        "sessions.max_open_ksessions": 500,
        "sessions.idle.tcp_established": 60.0,
        "sessions.idle.tcp_half_open": 5.0,
        "sessions.idle.udp": 30.0,
        "sessions.idle.icmp": 10.0,
        "sessions.idle.other": 60.0,
        "sessions.replay": "arrival",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sessions.grace": "-5s"}, r"^sessions\.grace: must not be negative"),
        ({"sessions.grace": "soon"}, r"^sessions\.grace: 'soon' is not a duration"),
        ({"sessions.idle.udp": "0s"}, r"^sessions\.idle\.udp: must be > 0"),
        # positive, but no whole microsecond: it said "must be > 0" alone (an audit)
        (
            {"sessions.hard_timeout": "0.0000004"},
            r"^sessions\.hard_timeout: must be > 0 \(durations "
            r"are whole microseconds\), got '0\.0000004'",
        ),
        ({"sessions.hard_timeout": True}, r"^sessions\.hard_timeout: expected a duration"),
        ({"sessions.max_open_ksessions": 0}, r"^sessions\.max_open_ksessions: must allow"),
        ({"sessions.max_open_ksessions": "lots"}, r"^sessions\.max_open_ksessions: 'lots' is not"),
        ({"sessions.max_open_ksessions": 0.0005}, r"^sessions\.max_open_ksessions: must allow"),
        ({"sessions.replay": "random"}, r"^sessions\.replay: expected one of arrival, event"),
        ({"sessions.idle.tcp": "5s"}, r"^unknown setting 'sessions\.idle\.tcp'"),
        # past int64 µs deadlines / the kernel's tables: an OverflowError after the first input
        (
            {"sessions.hard_timeout": "99999999999999999999d"},
            r"^sessions\.hard_timeout: at most 1000 years",
        ),
        ({"sessions.grace": 1e300}, r"^sessions\.grace: at most 1000 years"),
        (
            {"sessions.max_open_ksessions": 1e30},
            r"^sessions\.max_open_ksessions: at most 1099511627 thousand",
        ),
    ],
)
def test_bad_overrides_name_the_setting(overrides: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_policy(None, overrides)


# a billion laughs: nine levels of nine aliases each (387 million values if expanded)
BOMB = "".join(
    f"    - &l{k} [{','.join([f'*l{k - 1}'] * 9 if k else ['lol'] * 9)}]\n" for k in range(9)
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sessions:\n  grace: -1s\n", r"grace: must not be negative"),
        ("sessions:\n  idle:\n    udpp: 3s\n", r"unknown setting 'sessions\.idle\.udpp'"),
        ("session:\n  grace: 1s\n", r"unknown top-level key\(s\) session"),
        ("sessions:\n  grace: [1\n", r"YAML syntax error"),
        ("sessions: 5\n", r"sessions: expected a mapping"),
        ("- a\n", r"expected a mapping with a `sessions:` block"),
        # found by fuzzing: PyYAML's constructors raised their own errors, YAML 1.1 typing read
        # these as numbers, equal keys were kept last-wins, numbers past a float overflowed,
        # nesting recursed past Python's limit, and aliases expanded until memory ran out
        ("sessions:\n  idle:\n    udp: 2026-13-45\n", r"'2026-13-45' is not a duration"),
        ("sessions:\n  hard_timeout: 1:30\n", r"'1:30' is not a duration"),
        ("sessions:\n  hard_timeout: 0x10\n", r"'0x10' is not a duration"),
        ("sessions:\n  hard_timeout: 1" + "0" * 400 + "\n", r"at most 1000 years"),
        ("sessions:\n  max_open_ksessions: 1" + "0" * 400 + "\n", r"at most \d+ thousand"),
        (
            "sessions:\n  hard_timeout: 5s\n  hard_timeout: 15m\n",
            r"duplicate key 'hard_timeout' \(first at line 2\)",
        ),
        ("sessions:\n  hard_timeout: " + "[" * 500 + "]" * 500 + "\n", r"nests \d+ levels deep"),
        ("sessions:\n  replay:\n" + BOMB, r"more than \d+ values"),
        ("sessions:\n  grace: 1s\x07\n", r"character U\+0007 is not allowed"),
    ],
)
def test_bad_files_name_the_file_and_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=rf"^{path}:(\d+:)? .*{message}"):
        load_policy(path, {})


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read settings file"):
        load_policy(tmp_path / "absent.yaml", {})


def test_policies_built_in_code_are_checked_too() -> None:
    with pytest.raises(UsageError, match=r"sessions\.idle\.icmp"):
        SessionPolicy(idle_icmp_us=-1)
    assert SessionPolicy(max_open_ksessions=0.002).max_open_sessions == 2


def test_a_files_mistake_is_refused_even_where_an_option_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("sessions:\n  hard_timeout: -5s\n")
    with pytest.raises(UsageError, match=r"hard_timeout: must not be negative"):
        load_policy(path, {"sessions.hard_timeout": "30m"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("sessions.hard_timeout", "9" * 400, r"at most 1000 years"),
        ("sessions.max_open_ksessions", "1e308", r"at most \d+ thousand"),
        ("sessions.max_open_ksessions", "1" + "0" * 400, r"at most \d+ thousand"),
    ],
)
def test_options_past_any_float_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_policy(None, {name: value})


@pytest.mark.parametrize("text", ["", "sessions:\n", "sessions: ~\n"])
def test_an_empty_file_or_block_keeps_the_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    assert load_policy(path, {}) == SessionPolicy()


def test_plain_values_are_typed_with_either_yaml_scanner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libyaml marks a plain scalar with style "" where PyYAML's own scanner says None."""
    import yaml

    from obserae_forensics.matching import yaml_nodes

    path = tmp_path / "values.yaml"
    path.write_text("a: 5\nb: 0.5\nc: true\nd:\ne: '5'\nf: 30s\n")
    for loader in {yaml_nodes.LOADER, yaml.SafeLoader}:
        monkeypatch.setattr(yaml_nodes, "LOADER", loader)
        source = yaml_nodes.YamlFile(path, what="a file")
        assert yaml_nodes.plain_values(source, source.root) == {
            "a": 5,
            "b": 0.5,
            "c": True,
            "d": None,
            "e": "5",
            "f": "30s",
        }
