"""The names of the files a run consists of, in one place.

sessionize writes the first six into its output directory; recombine writes the other five
into its own (often the same directory). Evidence checks (evidence.py), recombine, the
exports and the query API all find a run's files by these names.
"""

from __future__ import annotations

SESSIONS_FILE = "sessions.parquet"
FLOWS_FILE = "flows.parquet"
EXPORTERS_FILE = "exporters.parquet"
MATCHES_FILE = "session_matches.parquet"
CONSOLIDATED_FILE = "sessions_consolidated.parquet"
MANIFEST_FILE = "manifest.json"
SESSIONIZE_FILES = (
    SESSIONS_FILE,
    FLOWS_FILE,
    EXPORTERS_FILE,
    MATCHES_FILE,
    CONSOLIDATED_FILE,
    MANIFEST_FILE,
)

RECOMBINED_FILE = "sessions_recombined.parquet"
FRAGMENTS_FILE = "recombined_fragments.parquet"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
TIMELINE_PNG = "timeline.png"
RECOMBINE_FILES = (RECOMBINED_FILE, FRAGMENTS_FILE, REPORT_MD, REPORT_JSON, TIMELINE_PNG)

# what a sessionize run, or a recombine output in its directory, consists of: what recombine,
# its exports and a later report read and cite (an export of an earlier command written into
# the directory is not among them, and may be replaced with --force)
RUN_FILES = SESSIONIZE_FILES + RECOMBINE_FILES
