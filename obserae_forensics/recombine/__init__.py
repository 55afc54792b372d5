"""recombine: find the fragments of split conversations across sessionize runs and view them as one.

Public API (the CLI's `recombine` command is a thin layer over these):

- `recombine_runs(run_dirs, out_dir, *, force=False) -> RecombineResult`: read the runs, chain
  fragments a bucket of keys at a time (partitioned.py: never every session at once), write
  sessions_recombined.parquet, recombined_fragments.parquet, report.md, report.json and
  timeline.png; finding fragments and the exports read those files a column or a row
  group at a time (the result's `conversations` and `fragments` read a whole file each
  time they are asked); `move_recombined(result, out_dir)` moves them (the CLI writes into
  a staging directory and moves them once the exports succeeded);
- `recombine_tables(run_dirs) -> RecombineResult`: the same tables in memory, no files
  (`write_recombined(result, out_dir)` writes them); what the functions below do when given
  run directories instead of a result;
- `find_fragments(source, session_id) -> DataFrame`: "Find Session Fragments" from any fragment;
  `same_endpoints(result, conversation_id)`: the other conversations of its endpoints;
  `split_conversation_ids(result)`: the conversations of more than one fragment;
- `export_flows(source, ids, path) -> int` and `export_pcap(source, ids, path) -> PcapExport`:
  every flow record, or every original export datagram, behind the named conversations.
"""

from __future__ import annotations

from .chain import FRAGMENTS_SCHEMA, RECOMBINED_SCHEMA, nice_above
from .conversations import (
    RecombineResult,
    check_out_dir,
    conversation_sessions,
    find_fragments,
    load_fragments,
    move_recombined,
    recombine_runs,
    recombine_tables,
    same_endpoints,
    split_conversation_ids,
    write_recombined,
)
from .export import (
    PcapExport,
    check_flows_target,
    check_pcap_target,
    export_flows,
    export_pcap,
    pcap_flows_path,
)
from .report import human_seconds

__all__ = [
    "FRAGMENTS_SCHEMA",
    "RECOMBINED_SCHEMA",
    "PcapExport",
    "RecombineResult",
    "check_flows_target",
    "check_out_dir",
    "check_pcap_target",
    "conversation_sessions",
    "export_flows",
    "export_pcap",
    "find_fragments",
    "human_seconds",
    "load_fragments",
    "move_recombined",
    "nice_above",
    "pcap_flows_path",
    "recombine_runs",
    "recombine_tables",
    "same_endpoints",
    "split_conversation_ids",
    "write_recombined",
]
