"""Cut an nfcapd file's flow records into many small nfcapd files: a quiet collector's
directory of 5-minute files, where the cost per file (the first-arrival pass that orders
the inputs, opening, the header, the appendix) outweighs the records.

    python bench/make_nfcapd_files.py bench/data/big/big.nfcapd OUT_DIR --files 4000 --records 43
    obserae-forensics sessionize OUT_DIR -o RUN

Each file holds the next `--records` flow records in their order (layout 2, the source's
compression), its slot 300 s after the one before; nothing else of the source is kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from obserae_forensics.readers.nfcapd import V3_RECORD
from obserae_forensics.readers.nfcapd_write import RawFile, read_raw, write_v2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="an nfcapd file (layout 2)")
    parser.add_argument("out", type=Path, help="a directory to write the files into")
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--records", type=int, default=43, help="flow records per file")
    args = parser.parse_args()
    raw = read_raw(args.source)
    flows = [
        record
        for block in raw.blocks
        for record in block
        if int.from_bytes(record[:2], "big" if raw.order == ">" else "little") == V3_RECORD
    ]
    files = min(args.files, len(flows) // args.records)
    args.out.mkdir(parents=True, exist_ok=True)
    for number in range(files):
        part = flows[number * args.records : (number + 1) * args.records]
        written = RawFile(
            raw.order,
            raw.compression,
            raw.created + 300 * number,
            raw.nfdversion,
            raw.creator,
            raw.ident,
            None,
            [part],
        )
        write_v2(args.out / f"nfcapd.{number:06d}", written)
    print(f"{args.out}: {files} files of {args.records} flow records from {args.source}")


if __name__ == "__main__":
    main()
