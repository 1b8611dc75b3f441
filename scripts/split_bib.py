"""Move every BibTeX entry of ``<catalog>/bib/<family>.bib`` into ``<catalog>/papers/<key>.bib``.

One paper, its own files: the entry sits beside its YAML record, so adding papers in
parallel never edits a shared file, and the family is stated once (in the YAML).

    python scripts/split_bib.py catalog [tests/fixtures/site/catalog ...]

For each entry the script writes its raw text (as bibtexparser read it, byte for byte)
plus one newline, then re-reads the new file and checks that the entry's raw text, key,
type and fields are unchanged. It refuses (and writes nothing) when a file holds
anything but entries and ``%`` comment lines, when a target file already exists with
other content, or when an entry has no YAML record beside it. After a successful split
``bib/`` is removed. Rerun it after a rebase that brings entries appended to the old
files: it is idempotent for entries already moved.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import bibtexparser


def plan(root: Path) -> dict[Path, tuple[str, object]]:
    """target path -> (text to write, parsed entry); raises SystemExit with one line on refusal."""
    out: dict[Path, tuple[str, object]] = {}
    for bib in sorted((root / "bib").glob("*.bib")):
        text = bib.read_text(encoding="utf-8")
        lib = bibtexparser.parse_string(text)
        if lib.failed_blocks or lib.strings or lib.preambles:
            raise SystemExit(f"{bib}: has failed blocks, @string or @preamble; split it by hand")
        for comment in lib.comments:
            if not all(line.startswith("%") for line in comment.comment.splitlines() if line.strip()):
                raise SystemExit(f"{bib}:{comment.start_line + 1}: a comment that is not a % line: {comment.raw!r}")
        for entry in lib.entries:
            if entry.raw not in text:
                raise SystemExit(f"{bib}: the raw text of {entry.key!r} is not verbatim in the file")
            target = root / "papers" / f"{entry.key}.bib"
            if target in out:
                raise SystemExit(f"{bib}: {entry.key!r} appears twice")
            if not (root / "papers" / f"{entry.key}.yaml").exists():
                raise SystemExit(f"{bib}: {entry.key!r} has no record papers/{entry.key}.yaml")
            new = entry.raw + "\n"
            if target.exists() and target.read_text(encoding="utf-8") != new:
                raise SystemExit(f"{target} exists with other content")
            out[target] = (new, entry)
    return out


def verify(target: Path, entry: object) -> None:
    lib = bibtexparser.parse_file(str(target))
    assert len(lib.blocks) == 1 and len(lib.entries) == 1, target
    got = lib.entries[0]
    assert got.raw == entry.raw, target  # byte for byte
    assert (got.key, got.entry_type) == (entry.key, entry.entry_type), target
    assert {f.key: f.value for f in got.fields} == {f.key: f.value for f in entry.fields}, target


def split(root: Path) -> int:
    todo = plan(root)
    for target, (text, _) in todo.items():
        target.write_text(text, encoding="utf-8")
    for target, (_, entry) in todo.items():
        verify(target, entry)
    if (root / "bib").exists():
        shutil.rmtree(root / "bib")
    return len(todo)


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["catalog"]:
        print(f"{arg}: {split(Path(arg))} entries moved to papers/<key>.bib")
