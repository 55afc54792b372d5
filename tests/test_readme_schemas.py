"""The README's description of every output table against the schemas the code writes.

The README is where a responder (or a notebook's author) looks up a column; a column added,
renamed or retyped in the code and not there makes it wrong without a word, and nothing
else compares the two. Tables documented as Markdown tables are compared name by name and
type by type; those described in prose (exporters, session_matches, recombine's outputs)
must name every column in backticks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from obserae_forensics.matching import SESSION_MATCHES_SCHEMA, SESSIONS_CONSOLIDATED_SCHEMA
from obserae_forensics.pipeline import EXPORTERS_SCHEMA
from obserae_forensics.recombine import FRAGMENTS_SCHEMA, RECOMBINED_SCHEMA
from obserae_forensics.schema import ADDRESS, FLOW_SCHEMA, SESSIONS_SCHEMA

README = Path(__file__).resolve().parents[1] / "README.md"
if not README.is_file():  # run from an installed package, without the checkout
    pytest.skip("README.md not found beside the tests", allow_module_level=True)
TEXT = README.read_text(encoding="utf-8")


def _section(start: str, end: str) -> str:
    """The README's text from the line holding `start` to the next line holding `end`."""
    head = TEXT.index(start)
    return TEXT[head : TEXT.index(end, head + len(start))]


def _table(section: str) -> dict[str, str]:
    """column name -> the type the README gives it, from the first Markdown table in
    `section`. A row may name several columns (`ip_a, port_a, ip_b, port_b` | `string,
    uint16`): the types are taken in turn, cycling, as the README writes them."""
    columns: dict[str, str] = {}
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    # one contiguous table: a paragraph within it renders the rows after it as text (a review)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = lines[start:end]
    assert rows[0].startswith("| column | type |"), rows[0]
    for row in rows[2:]:  # past the header and its rule
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        names = [n.strip() for n in cells[0].split(",")]
        # a parenthesis qualifies the type ("uint8 (null)", "string (dictionary in memory)")
        kinds = [re.sub(r"\s*\(.*\)$", "", k.strip()) for k in cells[1].split(", ")]
        if cells[1].startswith("timestamp["):
            kinds = [cells[1]]
        for i, name in enumerate(names):
            assert name not in columns, f"{name} twice in the README's table"
            columns[name] = kinds[i % len(kinds)]
    return columns


def _spelled(kind: pa.DataType) -> str:
    """An Arrow type as the README spells it."""
    if kind == ADDRESS:
        return "address"
    if pa.types.is_dictionary(kind):
        return _spelled(kind.value_type)
    if pa.types.is_timestamp(kind):
        return f"timestamp[{kind.unit}, {kind.tz}]"
    if pa.types.is_list(kind):
        return f"list<{_spelled(kind.value_type)}>"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_float64(kind):
        return "float64"  # Arrow prints "double"
    return str(kind)


def _compared(documented: dict[str, str], schema: pa.Schema) -> None:
    assert set(documented) == set(schema.names), (
        f"README lacks {sorted(set(schema.names) - set(documented))}, "
        f"has {sorted(set(documented) - set(schema.names))} the table does not"
    )
    wrong = {
        name: (documented[name], _spelled(schema.field(name).type))
        for name in schema.names
        if documented[name] != _spelled(schema.field(name).type)
    }
    assert not wrong, f"README type -> written type: {wrong}"


def _backticked(section: str) -> set[str]:
    """The column names `section` writes in backticks."""
    return set(re.findall(r"`([a-z_]+)`", section))


def _ranges(section: str, schema: pa.Schema) -> set[str]:
    """The columns a range `first` … `last` stands for: those between, in `schema`'s order."""
    names = schema.names
    found: set[str] = set()
    for first, last in re.findall(r"`([a-z_]+)`\s+…\s+`([a-z_]+)`", section):
        found.update(names[names.index(first) : names.index(last) + 1])
    return found


def test_the_flow_table_is_documented_as_the_readers_yield_it() -> None:
    _compared(_table(_section("## The flow table (`FLOW_SCHEMA`)", "\n#")), FLOW_SCHEMA)


def test_the_sessions_table_is_documented_as_written() -> None:
    section = _section("`sessions.parquet`, one row per session:", "\n\n`flows.parquet`")
    _compared(_table(section), SESSIONS_SCHEMA)


def test_the_consolidated_table_is_documented_as_written() -> None:
    section = _section("### Consolidated sessions (`sessions_consolidated.parquet`)", "\n#")
    _compared(_table(section), SESSIONS_CONSOLIDATED_SCHEMA)


@pytest.mark.parametrize(
    ("start", "end", "schema", "shorthand"),
    [
        ("### Exporter accounting", "\n#", EXPORTERS_SCHEMA, {}),
        ("- `session_matches.parquet`", "\n- ", SESSION_MATCHES_SCHEMA, {}),
        (
            "- **`sessions_recombined.parquet`**",
            "`recombined_fragments.parquet`\n  has one row",
            RECOMBINED_SCHEMA,
            {"`ab_/ba_ bytes/packets`": ("ab_bytes", "ba_bytes", "ab_packets", "ba_packets")},
        ),
        ("`recombined_fragments.parquet`\n  has one row", "\n- ", FRAGMENTS_SCHEMA, {}),
    ],
    ids=["exporters", "session_matches", "sessions_recombined", "recombined_fragments"],
)
def test_tables_described_in_prose_name_every_column(
    start: str, end: str, schema: pa.Schema, shorthand: dict[str, Any]
) -> None:
    section = _section(start, end)
    named = _backticked(section) | _ranges(section, schema)
    for spelled, columns in shorthand.items():
        if spelled in section:
            named.update(columns)
    missing = [name for name in schema.names if name not in named]
    assert not missing, f"the README's description names no {missing}"


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped but for
    hyphens, spaces made hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_readmes_links_to_its_sections_lead_somewhere() -> None:
    """The reading guide links sections by anchor; a heading renamed breaks them quietly."""
    outside_code = re.sub(r"```.*?```", "", TEXT, flags=re.S)
    anchors = {
        _slug(line.lstrip("#")) for line in outside_code.splitlines() if line.startswith("#")
    }
    linked = re.findall(r"\]\(#([^)]+)\)", outside_code)
    assert linked, "the reading guide links no section"
    assert sorted(set(linked) - anchors) == []
