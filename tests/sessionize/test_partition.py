"""The next steps' promise (README "What the next steps can rely on"): exporters are
independent, so a partition that replays one exporter's records alone gives that
exporter's rows of the one-process run, in their order (found untested by an audit,
which checked it by hand on 24 exporters of the corpus and vendor sets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from obserae_forensics.readers import discover_inputs, read_flows
from obserae_forensics.report import RunReport
from obserae_forensics.sessionize import Sessionizer, SessionPolicy
from obserae_forensics.sessionize.keys import evidence_root


def plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as text: each partition's dictionaries are its own."""
    return table.cast(
        pa.schema(
            [
                pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                for f in table.schema
            ]
        )
    )


def collect(batches: list) -> tuple[pa.Table, pa.Table]:
    sessions = pa.concat_tables([b.sessions for b in batches])
    flows = pa.concat_tables([plain(b.flows) for b in batches])
    return plain(sessions), flows


@pytest.mark.parametrize(
    "policy", [SessionPolicy(), SessionPolicy(hard_timeout_us=30_000_000, max_open_ksessions=0.005)]
)
def test_one_exporters_partition_gives_its_rows_of_the_whole_run(
    corpus: Path, policy: SessionPolicy
) -> None:
    report = RunReport()
    inputs = discover_inputs([corpus / "exports", corpus / "netflow_public"], report)
    root = evidence_root([item.path for item in inputs])
    table = pa.Table.from_batches(list(read_flows(inputs, report, batch_size=4096)))
    table = table.unify_dictionaries().combine_chunks()
    whole = Sessionizer(policy, identity_root=root)
    sessions, flows = collect(
        [whole.feed(b) for b in table.to_batches(max_chunksize=4096)] + [whole.finish()]
    )
    exporter = pc.cast(table.column("exporter"), pa.string())
    names = sorted(pc.unique(exporter).to_pylist())
    assert len(names) >= 5
    for name in names:
        rows = np.flatnonzero(np.asarray(pc.equal(exporter, name)))
        part = Sessionizer(policy, identity_root=root)
        out = []
        # each stretch of the exporter's consecutive records, as a batch
        for stretch in np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1):
            out.append(part.feed(table.slice(int(stretch[0]), len(stretch))))
        out.append(part.finish())
        part_sessions, part_flows = collect(out)
        mine = pc.equal(sessions.column("exporter"), name)
        assert part_sessions.equals(sessions.filter(mine)), name
        assert part_flows.equals(flows.filter(pc.equal(flows.column("exporter"), name))), name
