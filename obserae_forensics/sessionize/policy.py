"""SessionPolicy: the `sessions:` settings of the product documents, validated up front.

The YAML block is the seed's (obserae-sessions.txt, "Tuning"):

    sessions:
      hard_timeout: 15m
      grace: 30s
      max_open_ksessions: 500
      idle: {tcp_established: 60s, tcp_half_open: 5s, udp: 30s, icmp: 10s, other: 60s}
      replay: arrival          # ours: arrival (default) or event

Durations are `15m`, `30s`, `1h`, `500ms`, `2d` or plain numbers of seconds; inside the
package every duration is an integer number of microseconds, the unit of FLOW_SCHEMA times.
The surprising thing: `max_open_ksessions` is in thousands, and a fraction is allowed
(`0.002` = 2 sessions) so that the cap can be exercised on small inputs; the cap itself
must come out as a whole number of sessions, at least one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError

SECOND_US = 1_000_000
REPLAY_MODES = ("arrival", "event")

# seed setting name -> SessionPolicy field, in the seed's order
_DURATION_SETTINGS: dict[str, str] = {
    "sessions.hard_timeout": "hard_timeout_us",
    "sessions.grace": "grace_us",
    "sessions.idle.tcp_established": "idle_tcp_established_us",
    "sessions.idle.tcp_half_open": "idle_tcp_half_open_us",
    "sessions.idle.udp": "idle_udp_us",
    "sessions.idle.icmp": "idle_icmp_us",
    "sessions.idle.other": "idle_other_us",
}
_CAP_SETTING = "sessions.max_open_ksessions"
_REPLAY_SETTING = "sessions.replay"
SETTING_NAMES: tuple[str, ...] = (
    "sessions.hard_timeout",
    "sessions.grace",
    _CAP_SETTING,
    "sessions.idle.tcp_established",
    "sessions.idle.tcp_half_open",
    "sessions.idle.udp",
    "sessions.idle.icmp",
    "sessions.idle.other",
    _REPLAY_SETTING,
)

_UNITS_US = {
    "us": 1,
    "µs": 1,
    "ms": 1_000,
    "s": SECOND_US,
    "m": 60 * SECOND_US,
    "h": 3600 * SECOND_US,
    "d": 86_400 * SECOND_US,
}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(us|µs|ms|s|m|h|d)?\s*$")


YEAR_US = 365 * 24 * 3600 * SECOND_US
# Ceilings that keep every deadline (a time plus a duration) inside int64 µs with room to
# spare, and the cap inside what the kernel's tables can index: beyond them a setting is a
# typo, and it failed as an OverflowError after the first input had been read.
MAX_DURATION_US = 1000 * YEAR_US
MAX_OPEN_SESSIONS = 2**40


@dataclass(frozen=True)
class SessionPolicy:
    """The sessionizer's settings; durations in µs, defaults are the seed's values."""

    hard_timeout_us: int = 15 * 60 * SECOND_US
    grace_us: int = 30 * SECOND_US
    max_open_ksessions: int | float = 500
    idle_tcp_established_us: int = 60 * SECOND_US
    idle_tcp_half_open_us: int = 5 * SECOND_US
    idle_udp_us: int = 30 * SECOND_US
    idle_icmp_us: int = 10 * SECOND_US
    idle_other_us: int = 60 * SECOND_US
    replay: str = "arrival"

    def __post_init__(self) -> None:
        # a policy built in code gets the same checks as one read from YAML
        for setting, name in _DURATION_SETTINGS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise UsageError(f"{setting}: expected whole microseconds, got {_shown(value)}")
            bound = ">= 0" if setting == "sessions.grace" else "> 0"
            if value < 0 or (value == 0 and setting != "sessions.grace"):
                raise UsageError(f"{setting}: must be {bound}, got {value} µs")
            if value > MAX_DURATION_US:
                raise UsageError(
                    f"{setting}: at most {MAX_DURATION_US // YEAR_US} years, got {value} µs"
                )
        _cap_sessions(self.max_open_ksessions, _CAP_SETTING)
        if self.replay not in REPLAY_MODES:
            raise UsageError(
                f"{_REPLAY_SETTING}: expected one of {', '.join(REPLAY_MODES)}, got {self.replay!r}"
            )

    @property
    def max_open_sessions(self) -> int:
        """The per-exporter cap on open sessions, in sessions."""
        return _cap_sessions(self.max_open_ksessions, _CAP_SETTING)


def parse_duration(value: object, setting: str) -> int:
    """`15m`, `30s`, `500ms`, `1h`, `2d`, or a number of seconds -> whole microseconds."""
    if isinstance(value, bool):
        raise UsageError(f"{setting}: expected a duration like 30s or 15m, got {_shown(value)}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer past any float: past the ceiling too
            return _whole_us(math.inf, value, setting)
        if not math.isfinite(seconds):
            raise UsageError(f"{setting}: expected a finite duration, got {_shown(value)}")
        if seconds < 0:
            raise UsageError(f"{setting}: must not be negative, got {_shown(value)}")
        return _whole_us(seconds * SECOND_US, value, setting)
    if not isinstance(value, str):
        raise UsageError(f"{setting}: expected a duration like 30s or 15m, got {_shown(value)}")
    text = value.strip()
    if text.startswith("-"):
        raise UsageError(f"{setting}: must not be negative, got {_shown(value)}")
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(
            f"{setting}: {_shown(value)} is not a duration (use e.g. 500ms, 30s, 15m, "
            "1h, 2d or plain seconds)"
        )
    number, unit = match.groups()
    return _whole_us(float(number) * _UNITS_US[unit or "s"], value, setting)


def _whole_us(micros: float, value: object, setting: str) -> int:
    """Microseconds as a whole number; past MAX_DURATION_US it is refused here, before a
    float of 1e400 (infinite) could reach round()."""
    if not math.isfinite(micros) or micros > MAX_DURATION_US:
        raise UsageError(
            f"{setting}: at most {MAX_DURATION_US // YEAR_US} years, got {_shown(value)}"
        )
    return round(micros)


def _cap_sessions(value: object, setting: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(
            f"{setting}: expected a number of thousands of sessions, got {_shown(value)}"
        )
    # compared before any float arithmetic (10**400 has no float); infinity and NaN are
    # refused below as no whole number
    if value > MAX_OPEN_SESSIONS / 1000 and value != math.inf:
        raise UsageError(
            f"{setting}: at most {MAX_OPEN_SESSIONS // 1000} thousand open "
            f"sessions per exporter, got {_shown(value)} thousand"
        )
    sessions = value * 1000
    if not math.isfinite(sessions) or sessions < 1 or abs(sessions - round(sessions)) > 1e-6:
        raise UsageError(
            f"{setting}: must allow a whole number of open sessions, at least 1 "
            f"(got {_shown(value)} thousand)"
        )
    return round(sessions)


def _parse_cap(value: object, setting: str) -> int | float:
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise UsageError(f"{setting}: {_shown(value)} is not a number") from None
    _cap_sessions(value, setting)
    assert isinstance(value, int | float)
    return value


def _flatten(block: object, prefix: str, where: str) -> dict[str, object]:
    """The YAML mapping under `prefix` as dotted setting names -> raw values."""
    if not isinstance(block, Mapping):
        raise UsageError(f"{where}{prefix}: expected a mapping, got {type(block).__name__}")
    flat: dict[str, object] = {}
    for key, value in block.items():
        name = f"{prefix}.{key}"
        if name == "sessions.idle":
            flat.update(_flatten(value, name, where))
        elif name in SETTING_NAMES:
            flat[name] = value
        else:
            raise UsageError(f"{where}unknown setting {name!r} (known: {', '.join(SETTING_NAMES)})")
    return flat


def read_settings_file(path: Path) -> dict[str, object]:
    """The file's settings as dotted names -> values. Read as the rule files are (nodes with
    their lines, nesting and alias expansion bounded, a duplicate key refused) and typed no
    further than numbers, true/false and null: PyYAML's constructors raised their own errors
    on values like `2026-13-45`, read `1:30` as 90 and `0x10` as 16, and kept the last of
    two equal keys without a word."""
    return read_settings(path)[0]


def read_settings(path: Path) -> tuple[dict[str, object], str]:
    """`read_settings_file`'s settings, and the SHA-256 of the bytes they were read from:
    the manifest cites the file as it was read, not as it is when the run ends."""
    from ..matching.yaml_nodes import YamlFile, plain_values

    source = YamlFile(path, what="settings file", allow_empty=True)
    if source.empty:
        return {}, source.sha256
    document = plain_values(source, source.root)
    where = f"{path}: "
    if not isinstance(document, Mapping):
        raise UsageError(f"{where}expected a mapping with a `sessions:` block")
    unknown = [str(k)[:60] for k in document if k != "sessions"]
    if unknown:
        raise UsageError(
            f"{where}unknown top-level key(s) {', '.join(unknown)} (only `sessions:` is read)"
        )
    if document.get("sessions") is None:
        return {}, source.sha256
    return _flatten(document["sessions"], "sessions", where), source.sha256


def _shown(value: object) -> str:
    """A value as an error message quotes it: repr, cut short (a value of megabytes, or one
    that aliases expand, was written out whole)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def load_policy(
    path: Path | None,
    overrides: Mapping[str, str | int | float] | None = None,
    *,
    settings: Mapping[str, object] | None = None,
) -> SessionPolicy:
    """The policy in force: defaults, then the YAML file, then `overrides` (dotted names).
    `settings`: the file's, as `read_settings` gave them (the file is not read again)."""
    from_file: list[tuple[str, object, str]] = []
    if path is not None:
        read = read_settings_file(path) if settings is None else settings
        from_file = [(name, value, f"{path}: ") for name, value in read.items()]
    given: list[tuple[str, object, str]] = []
    value: object  # a setting's value, as given or as the file holds it
    for name, value in (overrides or {}).items():
        if name not in SETTING_NAMES:
            raise UsageError(f"unknown setting {name!r} (known: {', '.join(SETTING_NAMES)})")
        given.append((name, value, ""))
    changes: dict[str, Any] = {}
    # the file's values are checked even where an option replaces them: a broken settings
    # file must not pass because tonight's command line happens to cover its mistakes
    for name, value, where in from_file + given:
        try:
            if name in _DURATION_SETTINGS:
                us = parse_duration(value, name)
                if us == 0 and name != "sessions.grace":
                    raise UsageError(
                        f"{name}: must be > 0 (durations are whole "
                        f"microseconds), got {_shown(value)}"
                    )
                changes[_DURATION_SETTINGS[name]] = us
            elif name == _CAP_SETTING:
                changes["max_open_ksessions"] = _parse_cap(value, name)
            else:
                if value not in REPLAY_MODES:
                    raise UsageError(
                        f"{name}: expected one of {', '.join(REPLAY_MODES)}, got {_shown(value)}"
                    )
                changes["replay"] = value
        except UsageError as error:
            if where:
                raise UsageError(f"{where}{error}") from None
            raise
    return replace(SessionPolicy(), **changes)


def policy_settings(policy: SessionPolicy) -> dict[str, Any]:
    """The settings in force under their seed names (durations in seconds), for manifest.json."""
    settings: dict[str, Any] = {}
    for name in SETTING_NAMES:
        if name in _DURATION_SETTINGS:
            settings[name] = getattr(policy, _DURATION_SETTINGS[name]) / SECOND_US
        elif name == _CAP_SETTING:
            settings[name] = policy.max_open_ksessions
        else:
            settings[name] = policy.replay
    return settings
