"""``hmdb51`` layout: ``<class>_test_splitN.txt`` (lines ``video 1|2|0``: 1 = train, 2 = test,
0 = unused), in ROOT or one folder below; videos in ``<class>/`` folders."""

from __future__ import annotations

import re
from pathlib import Path

from vidssl.data.index import VideoRecord
from vidssl.data.layouts.common import _find, _locate, _read_lines, _rel, _warn_missing
from vidssl.errors import DataError

_HMDB_RE = re.compile(r"^(?P<cls>.+)_test_split(?P<fold>\d+)\.txt$")


def read_hmdb51(root: Path):
    """HMDB51 official ``<class>_test_splitN.txt`` (1 = train, 2 = test, 0 = unused); classes sorted by name."""
    files = [p for p in _find(root, "*_test_split*.txt") if _HMDB_RE.match(p.name)]
    if not files:
        raise DataError(f"no <class>_test_splitN.txt files in {root} or one folder below; the hmdb51 format needs them")
    names = sorted({_HMDB_RE.match(p.name)["cls"] for p in files})
    index = {n: i for i, n in enumerate(names)}
    code = {"1": "train", "2": "test", "0": "unused"}
    entries: dict[str, dict] = {}
    for source in files:
        m = _HMDB_RE.match(source.name)
        cls, fold = m["cls"], int(m["fold"])
        for lineno, line in _read_lines(source):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in code:
                raise DataError(f"{source} line {lineno}: expected 'VIDEO 0|1|2' (1 train, 2 test, 0 unused), "
                                f"got {line[:80]!r}; fix or remove that line")
            rel = f"{cls}/{parts[0]}"
            entry = entries.setdefault(rel, {"label": index[cls], "splits": {}})
            entry["splits"][fold] = code[parts[1]]
    listed = list(entries)
    candidates = [root, root / "videos", root / "hmdb51_org", root / "HMDB51", files[0].parent.parent]
    folder, missing = _locate(listed, root, candidates, files[0])
    _warn_missing(missing, "the HMDB51 split files")
    miss = set(missing)
    records = [VideoRecord(_rel(folder / rel, root), e["label"], names[e["label"]], e["splits"])
               for rel, e in entries.items() if rel not in miss]
    return records, names, sorted(miss)
