"""obserae-forensics command line: options -> one library call -> report -> exit code.

Exit codes:
    0  the run completed (skipped input, if any, is counted in the summary and manifest)
    1  --strict and some input had to be skipped; or the conservation check failed; or two
       sessions share a session_id; or an output could not be written; or an export's
       source capture changed since the run, or it could not read back every datagram
    2  usage error: bad option, bad settings/Cartography/Flow Matrix file, existing output,
       an output over an input, a table handed back that lacks what it needs
  130  interrupted (Ctrl-C); 143: terminated (SIGTERM). Either way nothing half-written is
       left (signals.py): a run's staging directory is removed, an existing output left
       as it was, or one being put in place completed and named
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from .errors import ForensicsError, InputError, UsageError
from .report import RunReport
from .signals import Interrupted, finished, install, settle
from .times import iso_us, nfdump_time

if TYPE_CHECKING:
    import pandas as pd

    from .pipeline import SessionizeResult
    from .recombine import RecombineResult

# rich_markup_mode=None: click's plain usage errors ("Error: Invalid value for
# '--batch-size' ...", one line after the usage) instead of a framed box that a log, or a
# script's `2>&1 | tail -1`, cuts apart; help is plain text too
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Offline network forensics over NetFlow/IPFIX captures and nfcapd files.",
)


def _print_version(asked: bool) -> None:
    if asked:
        from . import __version__

        typer.echo(f"obserae-forensics {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the version (as a run's manifest cites it) and exit.",
        ),
    ] = False,
) -> None:
    """(the commands' common options: --version, for a report to cite the tool)"""


def main() -> None:
    """The console entry (and `python -m obserae_forensics`): Ctrl-C and SIGTERM unwind the
    run once (signals.py), and the command says so: exit 130 and 143."""
    install()
    try:
        app()
    except Interrupted as stop:
        _stopped(stop)
    except SystemError as error:
        # the signal came while numba's dispatcher was calling a kernel: the interrupt
        # surfaces as "returned a result with an exception set", the unwinding done
        cause = error.__cause__ or error.__context__
        if not isinstance(cause, Interrupted):
            raise
        _stopped(cause)
    finally:
        finished()


def _stopped(stop: Interrupted) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):  # one more, as the process ends: no matter
        signal.signal(signum, signal.SIG_IGN)
    terminated = stop.signum == signal.SIGTERM
    kept = "; ".join(f"{path} was written whole before it" for path in stop.kept)
    typer.echo(
        f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: stopped, nothing "
        "left half-written (a staging directory or file is removed)"
        + (f"; {kept}" if kept else ""),
        err=True,
    )
    raise SystemExit(143 if terminated else 130)


TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".ndjson")  # what --flows never writes


def _path(
    kind: str = "path", *, exists: bool = False, output: bool = False
) -> Callable[[str], Path]:
    """A parser of one path operand. typer turns an empty text into Path("."), the current
    directory, before its own checks: `sessionize "$CAPTURES" --out x` with the variable
    unset replayed whatever the shell stood in. Here "" is refused, `exists` checks
    that the path is there and is a `kind` ("file", "directory" or any "path"), and
    `output` that nothing on the way to it is a file (`--out case.pcap/run` failed as
    "cannot write: ...: File exists", exit 1, and an export's only after the whole
    recombine)."""

    def parse(text: str) -> Path:
        if text == "":
            raise typer.BadParameter("an empty path (an unset shell variable?)")
        from .report import path_text, utf8_path

        if not utf8_path(text):
            # found by an audit: a traceback (UnicodeEncodeError) once the name met the
            # tables' text columns or the manifest; its bytes shown as the manifest shows
            # them (`\xff`, where it said `\\udcff`: another audit)
            raise typer.BadParameter(
                f"'{path_text(text)}' is not valid UTF-8; the tables and "
                "the manifest hold paths as UTF-8 text: name it "
                "through a symlink"
            )
        path = Path(text)
        if exists:
            if not path.exists():
                if path.is_symlink():  # a loop read as "does not exist" (an audit)
                    raise typer.BadParameter(
                        f"{kind} {text!r} is a link that leads nowhere "
                        "(to a missing file, or in a loop)"
                    )
                raise typer.BadParameter(f"{kind} {text!r} does not exist")
            if kind == "file" and path.is_dir():
                raise typer.BadParameter(f"{text!r} is a directory, not a file")
            if kind == "directory" and not path.is_dir():
                raise typer.BadParameter(f"{text!r} is not a directory")
        if output:
            for above in path.absolute().parents:
                try:
                    if not above.exists():
                        continue
                    # the nearest existing one decides; the rest is made
                    if not above.is_dir():
                        raise typer.BadParameter(
                            f"{text!r} lies under {str(above)!r}, which is a file, not a directory"
                        )
                except OSError:
                    pass  # a name too long, no permission: writing says so (exit 1)
                break
        return path

    return parse


InputsArgument = Annotated[
    list[Path],
    typer.Argument(
        parser=_path(exists=True),
        metavar="INPUT",
        help="PCAP/PCAPNG captures of NetFlow v1/v5/v7/v9 or IPFIX exports, IPFIX "
        "files, nfcapd files (each may be gzip, bzip2, xz, zstd or LZ4 "
        "compressed), or directories of them.",
    ),
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="<time>",
        help="Only records starting at or after this UTC "
        "time (ISO 8601 or nfdump's YYYY/MM/DD.hh:mm:ss), as nfdump -t selects.",
    ),
]
ToOption = Annotated[
    str | None,
    typer.Option("--to", metavar="<time>", help="Only records ending at or before this UTC time."),
]


def parse_time(text: str | None, option: str) -> int | None:
    """UTC time text -> µs since 1970; naive times are UTC."""
    if text is None:
        return None
    candidate = text.strip()
    written = nfdump_time(candidate)
    if written is not None:
        return int(written.timestamp()) * 1_000_000
    try:
        parsed = datetime.fromisoformat(candidate.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{option}: cannot read {text!r} as a UTC time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if iso_us(micros) is None:  # an offset took it past year 9999 or before year 1 in UTC
        raise UsageError(f"{option}: {text!r} lies outside years 1-9999 in UTC")
    return micros


def _fail(error: Exception, code: int) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code)


def _os_failure(error: OSError) -> typer.Exit:
    """An output that could not be written (a full disk, a directory where a file goes, a
    path under /proc): one line naming it, exit 1, never a traceback."""
    where = f"{error.filename}: " if error.filename else ""
    return _fail(ForensicsError(f"cannot write: {where}{error.strerror or error}"), 1)


def _print_problems(report: RunReport, listed: str, shown: int = 5) -> None:
    """The first problems, one line each (a newline in a file name broke the line), and
    how many more there are and where (they went unsaid: an audit)."""
    examples = report.examples
    for problem in examples[:shown]:
        text = f"{problem.reason}: {problem}".replace("\n", "\\n").replace("\r", "\\r")
        typer.echo(f"  {text}", err=True)
    if len(examples) > shown:
        typer.echo(
            f"  ... {len(examples) - shown} more example(s)" + (f" in {listed}" if listed else ""),
            err=True,
        )


def _progress_wanted(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@app.command("inspect")
def inspect_command(
    inputs: InputsArgument,
    flows: Annotated[
        Path | None,
        typer.Option(
            "--flows",
            parser=_path(output=True),
            metavar="<path>",
            help="Write the flows table here (Parquet).",
        ),
    ] = None,
    from_time: FromOption = None,
    to_time: ToOption = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first input problem, exit 1.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing --flows file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Decode the inputs and print what each exporter sent (and optionally the flows)."""
    from .pipeline import ReadOptions, inspect_inputs

    report = RunReport()
    try:
        if flows is not None and flows.suffix.lower() in TEXT_SUFFIXES:
            # found by a responder's audit: `--flows f.csv` wrote Parquet under that name
            raise UsageError(
                f"--flows {flows}: the flows table is written as Parquet, not "
                f"{flows.suffix}; give a .parquet path (`recombine "
                "--export-flows` writes CSV)"
            )
        options = ReadOptions(
            window=(parse_time(from_time, "--from"), parse_time(to_time, "--to")), strict=strict
        )
        table = inspect_inputs(
            inputs, options, report, flows_path=flows, progress=_progress_wanted(quiet), force=force
        )
        if flows is not None:
            settle()  # the flows table is in place: what is left is to say so
    except UsageError as error:
        raise _fail(error, 2) from error
    except InputError as error:
        raise _fail(error, 1) from error
    except OSError as error:
        raise _os_failure(error) from error
    _print_exporters(table)
    typer.echo(report.summary(manifest=False), err=True)
    _print_problems(report, "")
    hint = no_flows_hint(report)
    if hint:
        typer.echo(hint, err=True)
    raise typer.Exit(1 if strict and report.skipped_problems() else 0)


INSPECT_COLUMNS = [
    ("exporter", "exporter"),
    ("exporter_domain", "domain"),
    ("versions", "v"),
    ("datagrams", "datagrams"),
    ("records", "records"),
    ("packets", "packets"),
    # gaps beside what they lost: an nfcapd file keeps nfcapd's count of sequence failures
    # and no lost count, and the table showed only the lost, 0 (an audit against nfdump -E)
    ("octets", "bytes"),
    ("templates", "templates"),
    ("sequence_gaps", "seq gaps"),
    ("sequence_lost", "seq lost"),
    ("reorders", "reorders"),
    ("restarts", "restarts"),
    ("duplicates", "dups"),
    ("undecodable_sets", "bad sets"),
    ("records_without_template", "no template"),
    ("sampling_rate", "1:N"),
    ("first_export", "first export (UTC)"),
    ("last_export", "last export (UTC)"),
    # both ends: the largest alone showed -0.000 where the offsets spanned 16 years (an audit)
    ("clock_offset_min_s", "clock offset min s"),
    ("clock_offset_max_s", "max s"),
]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[no-any-return]
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _print_exporters(table: object) -> None:
    """The per-exporter summary, as a table a person reads in a terminal."""
    from rich.console import Console
    from rich.table import Table

    rows = table.to_pylist()  # type: ignore[attr-defined]
    columns = INSPECT_COLUMNS
    if any(row["nfcapd_failures"] for row in rows):
        # nfcapd's count of sequence failures is no loss the inputs show (softflowd's IPFIX
        # numbering counts 8 in sf_v10_synscan.nfcapd): "seq gaps 8, seq lost 0" alone read
        # as 8 gaps of nothing lost (an audit); shown beside them where an nfcapd file has any
        at = columns.index(("sequence_gaps", "seq gaps")) + 1
        columns = [*columns[:at], ("nfcapd_failures", "of them nfcapd's"), *columns[at:]]
    view = Table(title="exporters")
    for _, title in columns:
        view.add_column(title, justify="left" if title == "exporter" else "right", no_wrap=True)
    for row in rows:
        view.add_row(*(_cell(row[name]) for name, _ in columns))
    # as wide as the table needs: narrower, rich cut values to "…" (a domain, a byte count,
    # a clock offset), in a log or on an ordinary terminal alike (an audit)
    console = Console()
    needed = Console(width=1 << 16).measure(view).maximum
    Console(width=max(console.width, needed)).print(view)


@app.command("sessionize")
def sessionize_command(
    inputs: InputsArgument,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            parser=_path(output=True),
            metavar="<path>",
            help="Directory for the tables.",
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            parser=_path("file", exists=True),
            metavar="<file>",
            help="YAML settings (the seed's `sessions:` block).",
        ),
    ] = None,
    hard_timeout: Annotated[
        str | None,
        typer.Option(
            metavar="<duration>",
            help="sessions.hard_timeout (default 15m: 500ms, 30s, 15m, 1h, 2d or plain seconds).",
        ),
    ] = None,
    grace: Annotated[
        str | None, typer.Option(metavar="<duration>", help="sessions.grace (default 30s).")
    ] = None,
    max_open_ksessions: Annotated[
        float | None,
        typer.Option(
            metavar="<thousands>",
            help="sessions.max_open_ksessions: thousands of open sessions "
            "per exporter (default 500).",
        ),
    ] = None,
    idle_tcp_established: Annotated[
        str | None,
        typer.Option(metavar="<duration>", help="sessions.idle.tcp_established (default 60s)."),
    ] = None,
    idle_tcp_half_open: Annotated[
        str | None,
        typer.Option(metavar="<duration>", help="sessions.idle.tcp_half_open (default 5s)."),
    ] = None,
    idle_udp: Annotated[
        str | None, typer.Option(metavar="<duration>", help="sessions.idle.udp (default 30s).")
    ] = None,
    idle_icmp: Annotated[
        str | None, typer.Option(metavar="<duration>", help="sessions.idle.icmp (default 10s).")
    ] = None,
    idle_other: Annotated[
        str | None, typer.Option(metavar="<duration>", help="sessions.idle.other (default 60s).")
    ] = None,
    replay: Annotated[
        str | None,
        typer.Option(metavar="<mode>", help="sessions.replay: arrival (default) or event."),
    ] = None,
    cartography: Annotated[
        Path | None,
        typer.Option(parser=_path("file", exists=True), metavar="<file>", help="Cartography YAML."),
    ] = None,
    flow_matrix: Annotated[
        Path | None,
        typer.Option(parser=_path("file", exists=True), metavar="<file>", help="Flow Matrix YAML."),
    ] = None,
    from_time: FromOption = None,
    to_time: ToOption = None,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            max=1 << 24,
            metavar="<n>",
            help="Records per batch (the tables do not depend on it).",
        ),
    ] = 65_536,
    force: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first input problem, exit 1.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Replay the inputs into sessions; write the sessions, flows, exporters,
    session_matches and sessions_consolidated tables and a manifest."""
    from .pipeline import ReadOptions, SessionizeConfig, sessionize_inputs
    from .sessionize import load_policy
    from .sessionize.policy import read_settings

    overrides = {
        "sessions.hard_timeout": hard_timeout,
        "sessions.grace": grace,
        # whole thousands stay integers, as the YAML gives them
        "sessions.max_open_ksessions": int(max_open_ksessions)
        if max_open_ksessions is not None and float(max_open_ksessions).is_integer()
        else max_open_ksessions,
        "sessions.idle.tcp_established": idle_tcp_established,
        "sessions.idle.tcp_half_open": idle_tcp_half_open,
        "sessions.idle.udp": idle_udp,
        "sessions.idle.icmp": idle_icmp,
        "sessions.idle.other": idle_other,
        "sessions.replay": replay,
    }
    report = RunReport()
    try:
        settings, settings_sha256 = read_settings(config) if config is not None else ({}, None)
        policy = load_policy(
            config, {k: v for k, v in overrides.items() if v is not None}, settings=settings
        )
        if config is not None and not settings:
            # an empty file, one whose settings are all commented out, `sessions:` alone:
            # valid, but whoever gave --config meant something by it, and the defaults ran
            # without a word
            typer.echo(
                f"warning: {config} sets nothing (no setting under `sessions:`): "
                "the defaults are in force",
                err=True,
            )
        carto = matrix = None
        if cartography is not None or flow_matrix is not None:
            from .matching import empty_cartography, load_cartography, load_flow_matrix

            carto = load_cartography(cartography) if cartography else empty_cartography()
            if flow_matrix is not None:
                matrix = load_flow_matrix(flow_matrix, carto)
            # valid, but surely not what was meant: every session "unmatched", or only the
            # built-in names known, without a word (a review)
            if (
                cartography is not None
                and not carto.services
                and set(carto.kinds.values()) <= {"builtin"}
            ):
                typer.echo(
                    f"warning: {cartography} declares no host, network, group or service: "
                    "only the built-in names (internal4, internet4, ...) are known",
                    err=True,
                )
            if matrix is not None and not matrix.rules:
                typer.echo(
                    f"warning: {flow_matrix} has no rules: every session will be unmatched",
                    err=True,
                )
        job = SessionizeConfig(
            inputs=tuple(inputs),
            out=out,
            policy=policy,
            read=ReadOptions(
                batch_size=batch_size,
                window=(parse_time(from_time, "--from"), parse_time(to_time, "--to")),
                strict=strict,
            ),
            cartography=carto,
            flow_matrix=matrix,
            force=force,
            progress=_progress_wanted(quiet),
            protected=tuple(p for p in (config, cartography, flow_matrix) if p is not None),
            settings_file=config,
            settings_sha256=settings_sha256,
        )
        result = sessionize_inputs(job, report)
        settle()  # the run is in place: what is left is to say so
    except UsageError as error:
        raise _fail(error, 2) from error
    except InputError as error:
        raise _fail(error, 1) from error
    except OSError as error:
        raise _os_failure(error) from error
    states = ", ".join(f"{n} {s}" for s, n in sorted(result.states.items()))
    _say_swept(result.swept)
    typer.echo(report.summary(), err=True)
    _print_problems(report, f"{out / 'manifest.json'}: problems")
    typer.echo(
        f"{result.sessions} sessions{f' ({states})' if states else ''} from "
        f"{result.flows} flow records -> {out}",
        err=True,
    )
    for hint in (
        *changed_rules_hints(result.manifest),
        matrix_hint(result),
        no_flows_hint(report),
        late_hint(result.late_sessions, result.sessions, job.policy.replay),
        eviction_hint(result, job.policy.max_open_ksessions),
    ):
        if hint:
            typer.echo(hint, err=True)
    if not result.conservation_ok:
        check = result.manifest.get("conservation", {})
        differ = [
            f"{name} {check[f'{name}_in']} in, {check[f'{name}_in_sessions']} in sessions"
            for name in ("records", "packets", "bytes")
            if check.get(f"{name}_in") != check.get(f"{name}_in_sessions")
        ]
        typer.echo(
            "conservation check FAILED: "
            + "; ".join(differ)
            + (
                " (the input's counters pass 2**64, and a session's sum stops at"
                " 2**64 - 1: damaged counters)"
                if any(check.get(f"{n}_in", 0) >= 2**64 for n in ("packets", "bytes"))
                else ""
            )
            + "; see manifest.json",
            err=True,
        )
        raise typer.Exit(1)
    if result.repeated_session_ids:
        typer.echo(
            f"session id check FAILED: {result.repeated_session_ids} session_id(s) held by"
            f" more than one session (e.g. {', '.join(result.repeated_examples)}): the"
            " sessionizer could not tell apart sessions of one key with the very same"
            ' opened_at, split and late (README, "Orientation and server side"); see'
            " manifest.json",
            err=True,
        )
        raise typer.Exit(1)
    raise typer.Exit(1 if strict and report.skipped_problems() else 0)


LATE_HINT_MIN = 2  # late sessions before the summary names --replay event ...
LATE_HINT_ONE_IN = 20  # ... and at least one session in this many late


OTHER_TRAFFIC = ("not_ip", "not_udp", "not_flow_export")


def changed_rules_hints(manifest: dict[str, Any]) -> list[str]:
    """The settings, Cartography or Flow Matrix file edited while the run read its inputs:
    the run used the bytes it read first, and the next run with the file will not agree."""
    return [
        f"warning: {what} {cited['path']} {cited['changed']} (manifest.json: {key})"
        for key, what in (
            ("settings_file", "settings file"),
            ("cartography", "Cartography"),
            ("flow_matrix", "Flow Matrix"),
        )
        if isinstance(cited := manifest.get(key), dict) and cited.get("changed")
    ]


def matrix_hint(result: SessionizeResult) -> str | None:
    """With a Flow Matrix: the closed sessions no rule accounts for (the seed's "Unmatched
    only"), the rules that matched nothing (a rule mistyped or a service moved leaves no
    trace otherwise: a review) and the matched sessions that are answers alone, which
    "Unmatched only" does not show."""
    counted = result.manifest.get("counts", {}).get("flow_matrix")
    if not isinstance(counted, dict):
        return None
    idle = [name for name, count in counted["matches_by_rule"].items() if not count]
    alone = counted.get("answers_alone_matched", 0)
    alone_in_all = counted.get("answers_alone", alone)
    # (session_pressure has an entry per exporter that sent records)
    exporters = len(result.manifest.get("counts", {}).get("session_pressure", {}))
    return (
        f"Flow Matrix: {counted['unmatched_closed']} closed session(s) no rule accounts for"
        + (
            # 5952 read as conversations where 3 exporters saw 1984 (a review)
            f" (sessions are per exporter: a conversation several of the {exporters} "
            "exporters saw counts once for each)"
            if exporters > 1
            else ""
        )
        + (
            f"; {len(idle)} of {len(counted['matches_by_rule'])} rule(s) matched nothing: "
            + ", ".join(idle[:5])
            + (" ..." if len(idle) > 5 else "")
            if idle
            else ""
        )
        + (
            f"; {alone} matched session(s) are answers alone, their client seen sending "
            "nothing: one-way routing, a loss, or answers nobody asked for "
            f"(query: SessionQuery().answers_alone(), {alone_in_all} matched or not)"
            if alone
            else ""
        )
        + " (manifest.json: counts.flow_matrix)"
    )


def no_flows_hint(report: RunReport) -> str | None:
    """A word when captures held packets and no flow export: a raw capture of the traffic
    itself gave "0 flow records read ... not flow exports: 22 not_flow_export", exit 0, and
    nothing said what the tool reads instead (a review)."""
    other = sum(report.ignored.get(reason, 0) for reason in OTHER_TRAFFIC)
    # flow records left out by --from/--to, or export data that could not be read (its
    # template never came ...), are flow exports: the inputs were the right kind (a review)
    if report.records or report.outside_window or sum(report.skipped.values()):
        return None
    # frames (blocks) that were flow exports: export datagrams of templates or options
    # alone were said to be captures of nothing, or of the traffic itself (a review)
    exports = sum(stats.units for stats in report.files.values()) - other
    if exports > 0:
        return (
            f"no flow record in the inputs: their {exports} export frame(s) or block(s) "
            "held templates, options or other metadata only, no data record"
            + (f"; {other} frame(s) of other traffic" if other else "")
        )
    if not other:  # "0 sessions from 0 flow records", exit 0, and nothing more (a review)
        return (
            "no flow record in the inputs, and no frame of other traffic either: captures "
            "of nothing (a capture filter on the wrong port or interface?) or nfcapd files "
            "of no record"
        )
    return (
        f"no flow record in the inputs, and {other} frame(s) of other traffic: this tool "
        "reads flow exports, the NetFlow v5/v9 and IPFIX datagrams exporters send to a "
        "collector (a capture of them) and the nfcapd files collectors write, not a "
        "capture of the traffic itself"
    )


def late_hint(late: int, sessions: int, replay: str) -> str | None:
    """A word when many sessions are late under arrival replay: flows made offline (softflowd
    -r, nfpcapd) are flushed when the capture ends, out of time order, so records of one
    conversation land behind the watermark and each opens a late, one-way session of its
    own. A collector's occasional late record is no reason to say anything."""
    if replay != "arrival" or late < LATE_HINT_MIN or late * LATE_HINT_ONE_IN < sessions:
        return None
    return (
        f"{late} of {sessions} sessions are late (their records arrived behind the "
        "watermark): flows made offline from a packet capture (softflowd -r, nfpcapd) "
        "come out of time order; --replay event replays them by time"
    )


def eviction_hint(result: SessionizeResult, cap: float) -> str | None:
    """Sessions closed at the open-session cap were said only in manifest.json: their
    conversations are cut into fragments the cap made, not the traffic."""
    evicted = result.close_reasons.get("evicted", 0)
    if not evicted:
        return None
    pressure = result.manifest.get("counts", {}).get("session_pressure", {})
    exporters = sorted(name for name, entry in pressure.items() if entry.get("evictions"))
    return (
        f"{evicted} sessions were closed early at the open-session cap "
        f"(sessions.max_open_ksessions = {cap:g}, per exporter; {len(exporters)} "
        f"exporter(s) reached it: {', '.join(exporters[:3])}"
        f"{' ...' if len(exporters) > 3 else ''}), close_reason evicted: a conversation "
        "that went on continues in another fragment (`recombine` joins them, and settles "
        "an evicted unanswered attempt no_reply again: query scans there); a higher "
        "--max-open-ksessions keeps them whole"
    )


FRAGMENT_COLUMNS = [
    "fragment_index",
    "split",
    "session_id",
    "opened_at",
    "last_seen_at",
    "closed_at",
    "state",
    "close_reason",
    "ab_bytes",
    "ba_bytes",
    "ab_packets",
    "ba_packets",
    "link_reason",
    "joined_fragment",
    "gap_s",
]


@app.command("recombine")
def recombine_command(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            parser=_path("directory", exists=True),
            metavar="RUN_DIR",
            help="Output directories of sessionize.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            parser=_path(output=True),
            metavar="<path>",
            help="Write sessions_recombined, the report and the timeline here.",
        ),
    ] = None,
    session: Annotated[
        list[str] | None,
        typer.Option(
            "--session",
            metavar="<id>",
            help="Any fragment's session id (or a conversation id): "
            "print that conversation's fragments. Repeat for several; exports then cover only "
            "these.",
        ),
    ] = None,
    export_flows_to: Annotated[
        Path | None,
        typer.Option(
            "--export-flows",
            parser=_path(output=True),
            metavar="<path>",
            help="Write the flow records behind the conversations (.parquet or .csv): the "
            "split ones, or with --session those named.",
        ),
    ] = None,
    export_pcap_to: Annotated[
        Path | None,
        typer.Option(
            "--export-pcap",
            parser=_path(output=True),
            metavar="<path>",
            help="Write the original export datagrams behind the conversations as one "
            "capture: the split ones, or with --session those named. Records read from "
            "nfcapd files have no datagram: their flows go beside it (NAME.flows.parquet).",
        ),
    ] = None,
    captures: Annotated[
        list[Path] | None,
        typer.Option(
            "--captures",
            parser=_path("directory", exists=True),
            metavar="<dir>",
            help="With --export-pcap: a directory where the runs' source captures are now (found "
            "by their path's tails down to their name, checked against the manifest's size and "
            "SHA-256), when they moved since the run. Repeat for several.",
        ),
    ] = None,
    templates: Annotated[
        bool,
        typer.Option(
            "--templates/--no-templates",
            help="With --export-pcap: also write the datagrams, "
            "from any capture of the run, that defined the templates of the v9/IPFIX datagrams "
            "and carried the options data in force, so the capture decodes on its own (checked "
            "by decoding it).",
        ),
    ] = True,
    force: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
) -> None:
    """Find and recombine split sessions; report, find fragments, export them as one."""
    from .recombine import check_out_dir, recombine_runs
    from .tables.parquet import made_directory
    from .tables.scratch import owned_directory

    incomplete = False  # a capture export that could not read back every datagram
    swept: list[Path] = []
    # ids as copied from a report or a spreadsheet: padded, or in capitals (sessionize's
    # are 16 lowercase hex digits; such an id was "no session" though it is there: a review)
    session = [_session_id(text) for text in session] if session else session
    try:
        if out is None and not session and export_flows_to is None and export_pcap_to is None:
            raise UsageError(
                "nothing to do: give --out, --session, --export-flows or --export-pcap"
            )
        if export_pcap_to is None and (not templates or captures):
            # taken without a word, and nothing done with it (a review)
            raise UsageError(
                f"{'--no-templates' if not templates else '--captures'} applies to "
                "--export-pcap, not given"
            )
        # the flows of nfcapd records beside the capture (pcap_flows_path) are refused
        # by export_pcap, only when there are such records
        if (
            export_flows_to is not None
            and export_pcap_to is not None
            and export_flows_to.resolve() == export_pcap_to.resolve()
        ):
            raise UsageError(
                f"--export-flows {export_flows_to} is where --export-pcap "
                f"{export_pcap_to} writes: one would replace the other"
            )
        if out is not None:
            _refuse_exports_into(out, export_flows_to, export_pcap_to)
            _refuse_another_run(out, run_dirs)
            check_out_dir(out, force=force)
        # the tables are written a bucket of keys at a time, never held whole: into a
        # hidden directory in --out (under TMPDIR without it), moved into place once the
        # exports have succeeded (a source capture changed since the run refuses the
        # capture export before --out or the flows are written)
        with (
            made_directory(out) if out is not None else nullcontext(),
            owned_directory(out, ".recombine.", ".partial", swept) as staging,
        ):
            _say_swept(swept)
            result = recombine_runs(run_dirs, staging)
            incomplete = _recombine_outputs(
                result,
                out,
                session,
                export_flows_to,
                export_pcap_to,
                templates,
                force,
                tuple(captures or ()),
            )
    except UsageError as error:
        raise _fail(error, 2) from error
    except InputError as error:
        raise _fail(error, 1) from error
    except OSError as error:
        raise _os_failure(error) from error
    if incomplete:
        raise typer.Exit(1)


def _say_swept(swept: list[Path]) -> None:
    """Name the work directories of killed runs that this one removed (scratch.py): hidden
    and large, they were left for good, and a responder who finds them gone learns why."""
    if swept:
        typer.echo(
            f"removed {len(swept)} hidden work director{'y' if len(swept) == 1 else 'ies'}"
            " that killed runs had left: " + ", ".join(map(str, swept)),
            err=True,
        )


def _refuse_another_run(out: Path, run_dirs: list[Path]) -> None:
    """--out in a sessionize run that is not one of those recombined: `show` and `load` of it
    would take the other runs' conversations for its own (a review). Beside one of its own
    runs, the tables describe that run and are where `load` looks for them."""
    from .tables.layout import MANIFEST_FILE, SESSIONS_FILE

    if not ((out / SESSIONS_FILE).is_file() and (out / MANIFEST_FILE).is_file()):
        return
    if out.resolve() in {run.resolve() for run in run_dirs}:
        return
    raise UsageError(
        f"--out {out} is another sessionize run's directory, not one of the runs "
        "recombined: its `show` and `query.load` would take these conversations for its "
        "own; give a directory of its own"
    )


def _refuse_exports_into(
    out: Path, export_flows_to: Path | None, export_pcap_to: Path | None
) -> None:
    """An export that is one of the files --out gets: the tables moved in after it would
    replace it (an audit: `--export-flows OUT/sessions_recombined.parquet` said "2 flow
    records -> ..." and the file held the table; refused, it left the flows posing as it)."""
    from .recombine import pcap_flows_path
    from .tables.layout import RECOMBINE_FILES

    taken = {(out / name).resolve(): name for name in RECOMBINE_FILES}
    for option, target in (("--export-flows", export_flows_to), ("--export-pcap", export_pcap_to)):
        if target is None:
            continue
        places = [target] if option == "--export-flows" else [target, pcap_flows_path(target)]
        for place in places:
            name = taken.get(place.resolve())
            if name is not None:
                raise UsageError(
                    f"{option} {target} writes {place}, the {name} that --out "
                    f"{out} gets: one would replace the other"
                )


def _recombine_outputs(
    result: RecombineResult,
    out: Path | None,
    session: list[str] | None,
    export_flows_to: Path | None,
    export_pcap_to: Path | None,
    templates: bool,
    force: bool,
    captures: tuple[Path, ...],
) -> bool:
    """recombine's outputs from what it found: --session ids checked before anything is
    written, the capture export, the flows export, --out, then what it says. True when
    the capture export could not read back every datagram."""
    from .protocols import PORT_PROTOCOLS, protocol_keyword
    from .recombine import (
        check_flows_target,
        check_pcap_target,
        conversation_sessions,
        export_flows,
        export_pcap,
        find_fragments,
        move_recombined,
        same_endpoints,
        split_conversation_ids,
    )
    from .recombine.report import cut_message, endpoint_text
    from .times import iso_us

    incomplete = False
    if session:  # every id known before anything is written
        conversation_sessions(result, session)
    ids = list(session or [])
    if not ids and (export_flows_to is not None or export_pcap_to is not None):
        ids = split_conversation_ids(result)
    # both targets refused alike before anything is written, whether there is anything to
    # export or not
    if export_flows_to is not None:
        check_flows_target(result, export_flows_to, force=force, captures=captures)
    if export_pcap_to is not None:
        check_pcap_target(result, export_pcap_to, force=force, captures=captures)
    # the capture export first: a source capture changed since the run refuses it
    # before --out or the flows are written
    taken = [] if export_flows_to is None else [("--export-flows", export_flows_to)]
    exported = (
        export_pcap(
            result,
            ids,
            export_pcap_to,
            with_templates=templates,
            force=force,
            captures=captures,
            taken=taken,
        )
        if export_pcap_to is not None and ids
        else None
    )
    written = (
        export_flows(result, ids, export_flows_to, force=force)
        if export_flows_to is not None and ids
        else None
    )
    if out is not None:  # the tables last: --out is whole only when all the rest is
        move_recombined(result, out, force=force)
    settle()  # every output is in place: what is left is to say so
    typer.echo(result.summary(), err=True)
    shown_conversations: set[str] = set()
    for session_id in session or []:
        frame = find_fragments(result, session_id)
        conversation = str(frame["conversation_id"].iloc[0])
        if conversation in shown_conversations:
            continue  # two fragments of one conversation given: it is shown once
        shown_conversations.add(conversation)
        shown = [c for c in FRAGMENT_COLUMNS if c in frame.columns]
        row = _conversation_row(result, conversation)
        ported = str(row["protocol"]) in {protocol_keyword(n) for n in PORT_PROTOCOLS}
        ends = [
            endpoint_text(str(row[f"{side}_ip"]), int(row[f"{side}_port"]), ported)
            for side in ("client", "server")
        ]
        # client -> server as the report has them (ip_a <-> ip_b of its first fragment,
        # which can be another orientation than the conversation's)
        typer.echo(
            f"conversation {conversation}: {row['protocol']} {ends[0]} → {ends[1]} "
            f"({row['exporter']}), {len(frame)} fragment(s)"
        )
        # the seed: widen the time range for fragments that may precede or follow
        window = result.report["window"].get(str(row["exporter"]), {})
        for head, cut in ((True, "head_cut"), (False, "tail_cut")):
            if row[cut]:
                typer.echo(
                    "("
                    + cut_message(
                        head,
                        int(row["splits"][0]) if row["splits"] else 0,
                        iso_us(row["first_seen"], trim_fraction=True),
                        (window.get("start"), window.get("end")),
                    )
                    + ")"
                )
        listed = frame[shown]
        if "joined_fragment" in shown:  # an index, not the float pandas reads it as for nulls
            listed = listed.assign(joined_fragment=listed["joined_fragment"].astype("UInt32"))
        text = _times_as_text(listed).astype(object)
        text = text.where(text.notna(), "")  # the first fragment joined nothing: no reason
        typer.echo(text.to_string(index=False))
        if "split" in shown and len(frame) > 1:  # two 0s read as two first fragments
            typer.echo(
                "(fragment_index: the fragment's place in the conversation; split: in its "
                "run's own numbering, 0 for a late session or a run's first piece)"
            )
        others = same_endpoints(result, conversation)
        if len(others):
            typer.echo(
                f"{len(others)} other conversation(s) of the same exporter, protocol, "
                "addresses and ports, not joined to it (begun past its idle timeout, a new "
                "connection, or the ports used again later):"
            )
            typer.echo(_times_as_text(others).to_string(index=False))
    if not session and (export_flows_to is not None or export_pcap_to is not None):
        typer.echo(
            f"exporting the {len(ids)} split conversation(s)"
            # nothing written, exit 0, and no word of why (a review)
            + ("" if ids else ": nothing to write (--session ID exports any conversation)"),
            err=True,
        )
    if written is not None:
        typer.echo(f"{written} flow records -> {export_flows_to}", err=True)
    if exported is not None:
        for note in exported.notes:
            typer.echo(note, err=True)
        missed = exported.report.skipped_problems()
        if missed:  # the capture is not what the flows say: the export is incomplete
            incomplete = True
            typer.echo(
                f"error: {missed} datagram(s) behind these flows could not be read "
                "back; the capture holds the rest:",
                err=True,
            )
            _print_problems(exported.report, "")
        if exported.path is not None:
            line = (
                f"{exported.datagrams} frames carrying {exported.records} records "
                f"-> {exported.path} ({exported.format})"
            )
            if exported.template_datagrams:
                line += (
                    f", including {exported.template_datagrams} datagram(s) added for "
                    "their templates and options"
                )
            if exported.checked_records:
                same = exported.checked_records - exported.differing_records
                line += (
                    f"; decoded alone, {same} of {exported.checked_records} records as in the run"
                )
                if exported.decoded_records > exported.checked_records:
                    # the frames carry other conversations' records too: "4 frames carrying
                    # 11 records" hid a 1.37 MB transfer's record among 6 others (a review)
                    line += (
                        f", of {exported.decoded_records} the capture holds (the rest are "
                        "other conversations' records in the same datagrams, or in those "
                        "added for templates)"
                    )
            typer.echo(line, err=True)
    return incomplete


SHOW_DEFAULT_COLUMNS = {
    # client->server and server->client bytes (cs_bytes, sc_bytes), made from ab/ba: the
    # a->b columns beside the client/server ones read as client->server, which they are
    # only when the client is `a` (found by an audit)
    "sessions": [
        "opened_at",
        "protocol",
        "client_ip",
        "client_port",
        "server_ip",
        "server_port",
        "cs_bytes",
        "sc_bytes",
        "state",
        "close_reason",
        "role_method",
        "matched_rules",
    ],
    "flows": [
        "first_seen",
        "src_addr",
        "src_port",
        "dst_addr",
        "dst_port",
        "protocol",
        "packets",
        "octets",
        "direction",
        "session_id",
    ],
}
# what the default view adds when the rows shown need it (an audit: sampled counters read
# as the traffic, 30,000 times too small, and one conversation seen by two exporters as two
# identical rows): (column, the column it follows)
SHOW_SAMPLING = {"sessions": "sc_bytes", "flows": "octets"}
SHOW_EXPORTER = {"sessions": "protocol", "flows": "protocol"}
SHOW_EXTRA_SOURCES = ("sampling_rate", "counters_scaled", "exporter")  # what decides them
# a bidirectional (IPFIX biflow) record's answer: shown beside packets/octets when a row
# shown has one (a biflow record's 6 answer packets showed as 0 packets: a review)
SHOW_REVERSE = ["reverse_packets", "reverse_octets"]


# what `show` makes of a session's a/b counters (client->server, server->client), which
# --columns names as it names the table's own (the default view showed cs_bytes, and
# `--columns session_id,cs_bytes` said the table had no such column: an audit)
CLIENT_SERVER_COLUMNS = {
    "cs_bytes": ("ab_bytes", "ba_bytes"),
    "sc_bytes": ("ba_bytes", "ab_bytes"),
    "cs_packets": ("ab_packets", "ba_packets"),
    "sc_packets": ("ba_packets", "ab_packets"),
}


def _times_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its time columns as ISO text. pandas holds a damaged record's time past
    year 9999 but raised printing it, which took the whole command down; such a time shows
    as its microseconds instead (as the manifest gives them)."""
    import pandas as pd
    import pyarrow as pa

    frame = frame.copy()
    for name in frame.columns:
        if not pd.api.types.is_datetime64_any_dtype(frame[name].dtype):
            continue
        times = pa.array(frame[name])
        scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}[times.type.unit]
        texts = []
        for value in times.cast(pa.int64()).to_pylist():
            micros = None if value is None else value * scale if scale else value // 1_000
            text = iso_us(micros)
            texts.append(None if micros is None else text or f"{micros} µs since 1970")
        frame[name] = pd.Series(texts, index=frame.index, dtype=object)
    return frame


def _manifest_flow_matrix(run_dir: Path) -> str | None:
    """The Flow Matrix a run's manifest cites (its path as given), "" when it cites none;
    UsageError when there is no readable manifest to tell."""
    from .tables.manifest import read_manifest

    cited = read_manifest(run_dir).get("flow_matrix")
    return str(cited.get("path")) if isinstance(cited, dict) else ""


@app.command("show")
def show_command(
    run_dir: Annotated[
        Path,
        typer.Argument(
            parser=_path("directory", exists=True),
            metavar="RUN_DIR",
            help="An output directory of sessionize (or of recombine --out).",
        ),
    ],
    table: Annotated[
        str | None,
        typer.Option(
            metavar="<table>",
            help="sessions, flows, exporters, session_matches, "
            "sessions_consolidated; in a recombine output sessions_recombined, "
            "recombined_fragments. Default: sessions, in a recombine output "
            "sessions_recombined.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=1_000_000_000, metavar="<n>", help="Rows to print.")
    ] = 10,
    columns: Annotated[
        str | None, typer.Option(metavar="<names>", help="Comma-separated columns.")
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            metavar="<column>",
            help="Rows in this column's order (ties as in the table, empty last), not the "
            "table's: sessions are written as they close. Reads the columns shown whole.",
        ),
    ] = None,
    descending: Annotated[
        bool, typer.Option("--descending", help="With --sort: largest first.")
    ] = False,
) -> None:
    """Print the first rows of one table of a run."""
    from .tables.layout import MATCHES_FILE
    from .tables.parquet import read_parquet_head, read_parquet_schema, read_parquet_sorted

    if table is None:  # a recombine --out directory has no sessions: said "does not exist"
        recombined = run_dir / "sessions_recombined.parquet"
        plain = (run_dir / "sessions.parquet").is_file()
        table = "sessions_recombined" if not plain and recombined.is_file() else "sessions"
    if not table.isidentifier():  # a table's name, not a path out of the run directory
        raise _fail(UsageError(f"--table {table!r} is not a table name"), 2)
    path = run_dir / f"{table}.parquet"
    if not path.is_file():
        present = sorted(p.stem for p in run_dir.glob("*.parquet"))
        raise _fail(
            UsageError(
                f"{path} does not exist; {run_dir} holds {', '.join(present) or 'no table'}"
            ),
            2,
        )
    wanted = SHOW_DEFAULT_COLUMNS.get(table)
    notes: list[str] = []
    extra: list[str] = []
    if columns is not None:
        wanted = list(dict.fromkeys(name.strip() for name in columns.split(",")))
        if "" in wanted:
            raise _fail(UsageError(f"--columns {columns!r} names an empty column"), 2)
    elif table in SHOW_SAMPLING:  # the default view, and what it adds when rows need it
        if table == "sessions" and not (run_dir / MATCHES_FILE).is_file():
            try:
                matrix = _manifest_flow_matrix(run_dir)
            except UsageError as error:
                # no manifest to tell whether there was a Flow Matrix: the column as the
                # table holds it (it said "no Flow Matrix" and hid the matches: a review)
                matrix = None
                notes.append(
                    f"{error}; whether this run matched its sessions against a Flow Matrix "
                    "cannot be told: matched_rules is shown as the table holds it"
                )
            if matrix:
                # the run had one and its matches file is gone: matched_rules still holds
                # the matches (it said "no Flow Matrix" and hid them: an audit)
                notes.append(
                    f"{MATCHES_FILE} is missing from this run, which matched its "
                    f"sessions against {matrix}: matched_rules shows the matches"
                )
            elif matrix is not None:
                # `[]` on every row read as "no rule matched" (an audit)
                wanted = [name for name in wanted or () if name != "matched_rules"]
                notes.append("no Flow Matrix in this run: sessions were not matched against rules")
        try:  # a table of another version may lack them: the view goes without
            names = set(read_parquet_schema(path).names)
            if set(SHOW_EXTRA_SOURCES) <= names:
                extra = list(SHOW_EXTRA_SOURCES)
            if table == "flows" and set(SHOW_REVERSE) <= names:
                extra += SHOW_REVERSE
        except UsageError as error:
            raise _fail(error, 2) from error
    derived = (
        [name for name in wanted or () if name in CLIENT_SERVER_COLUMNS]
        if table == "sessions"
        else []
    )
    read = wanted
    if derived or extra:  # cs_bytes/sc_bytes are made from the a/b columns
        sources = [column for name in derived for column in CLIENT_SERVER_COLUMNS[name]]
        if derived:
            sources = ["client_ip", "client_port", "ip_a", "port_a", *sources]
        read = list(dict.fromkeys([n for n in wanted or () if n not in derived] + sources + extra))
    if descending and sort is None:
        raise _fail(UsageError("--descending orders by --sort, not given"), 2)
    try:
        if sort is not None:  # a responder wanted opened_at order, and got close order
            shown = read if read is not None else read_parquet_schema(path).names
            data, total = read_parquet_sorted(path, limit, shown, sort, descending=descending)
        else:
            data, total = read_parquet_head(path, limit, read)
    except UsageError as error:
        raise _fail(error, 2) from error
    notes[:0] = _show_changed(run_dir, path.name)
    frame = data.to_pandas(integer_object_nulls=True)  # ICMP type 8 printed as 8.0
    if derived:
        forward = (frame["client_ip"] == frame["ip_a"]) & (frame["client_port"] == frame["port_a"])
        for name in derived:
            along, against = CLIENT_SERVER_COLUMNS[name]
            frame[name] = frame[along].where(forward, frame[against])
    if wanted and set(SHOW_REVERSE) <= set(extra):
        wanted = _show_reverse(frame, wanted, notes)
    if wanted and set(SHOW_EXTRA_SOURCES) <= set(extra):
        wanted = _show_extras(frame, table, wanted, notes)
    if derived or extra:  # (then there is a view: a default one, or --columns)
        frame = frame[cast("list[str]", wanted)]
    frame = _times_as_text(frame).astype(object)
    frame = frame.where(frame.notna(), "")  # an open session has no close reason yet
    import pandas as pd

    if len(frame):
        with pd.option_context(
            "display.width", 200, "display.max_columns", None, "display.max_colwidth", 40
        ):
            typer.echo(frame.to_string(index=False))
    else:  # the columns' names alone: pandas said "Empty DataFrame ... Index: []" (a review)
        typer.echo("  ".join(str(name) for name in frame.columns))
    ordered = f", by {sort}{' descending' if descending else ''}" if sort else ""
    typer.echo(f"({total} rows in {path}{ordered})")
    for note in notes:
        typer.echo(f"({note})")


def _session_id(text: str) -> str:
    """A --session id as sessionize writes it: trimmed, its hex digits in lower case."""
    text = text.strip()
    return text.lower() if re.fullmatch(r"[0-9A-Fa-f]{16}", text) else text


def _conversation_row(result: RecombineResult, conversation: str) -> dict[str, Any]:
    """One conversation of recombine's table, its times as UTC µs (a damaged record's past
    year 9999 is no Python datetime)."""
    import pyarrow.compute as pc

    from .recombine.report import rows_us

    table = result.conversations
    # (compute functions take Python scalars; the stubs only Arrow ones)
    [row] = rows_us(table.filter(pc.equal(table.column("conversation_id"), conversation)))  # type: ignore[call-overload]
    return row


def _show_changed(run_dir: Path, name: str) -> list[str]:
    """The table's size against what the run's manifest cites (outputs): rows of a table
    changed since the run were printed as the run's (a review). Sizes alone: show reads a
    few rows, and a hash would read the whole table."""
    from .tables.manifest import changed_tables, read_manifest

    try:
        manifest = read_manifest(run_dir)
    except UsageError:  # no manifest (said where it matters), nothing to compare with
        return []
    return changed_tables(run_dir, manifest, [name], hashed=False)


def _show_reverse(frame: pd.DataFrame, wanted: list[str], notes: list[str]) -> list[str]:
    """The flows view with reverse_packets/reverse_octets after octets when a row shown is a
    bidirectional record (its answer's counters)."""
    answered = (frame["reverse_packets"].to_numpy(dtype="uint64") > 0) | (
        frame["reverse_octets"].to_numpy(dtype="uint64") > 0
    )
    if not answered.any() or "octets" not in wanted:
        return wanted
    notes.append(
        f"{int(answered.sum())} row(s) shown are bidirectional records: "
        "reverse_packets/reverse_octets are the answer's, dst_addr to src_addr"
    )
    place = wanted.index("octets") + 1
    return [*wanted[:place], *SHOW_REVERSE, *wanted[place:]]


def _show_extras(frame: pd.DataFrame, table: str, wanted: list[str], notes: list[str]) -> list[str]:
    """The default view's columns with `sampling_rate` when a row shown is sampled (its
    counters as the exporter counted them, not the traffic) and `exporter` when the rows
    come from more than one."""
    wanted = list(wanted)
    rate = frame["sampling_rate"].to_numpy(dtype="int64")
    scaled = frame["counters_scaled"].to_numpy(dtype=bool)
    sampled = (rate > 1) & ~scaled
    estimated = (rate > 1) & scaled
    counters = "cs_bytes/sc_bytes" if table == "sessions" else "packets/octets"
    if "reverse_octets" in wanted:
        counters += "/reverse_packets/reverse_octets"
    if sampled.any() or estimated.any():
        last_counter = "reverse_octets" if "reverse_octets" in wanted else SHOW_SAMPLING[table]
        wanted.insert(wanted.index(last_counter) + 1, "sampling_rate")
    if sampled.any():
        notes.append(
            f"{int(sampled.sum())} row(s) shown are sampled 1-in-sampling_rate: "
            f"their {counters} are what the exporter counted; multiply by "
            "sampling_rate for the traffic (sessions_consolidated holds scaled "
            "counters)"
        )
    if estimated.any():
        # nfcapd multiplied them already: 45,000,000 bytes of one sampled 1,500-byte packet
        # at 1:30,000 read as measured beside the capture's 1,500 and its note (a review)
        notes.append(
            f"{int(estimated.sum())} row(s) shown are sampled 1-in-sampling_rate, their "
            f"{counters} multiplied by it already (nfcapd does): an estimate of the "
            "traffic, each sampled packet counted sampling_rate times, not a measure"
        )
    if frame["exporter"].nunique(dropna=False) > 1:
        wanted.insert(wanted.index(SHOW_EXPORTER[table]), "exporter")
    return wanted
