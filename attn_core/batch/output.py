"""Score rows written as they are produced: a killed run leaves a valid file, and ``--resume`` continues it.

CSV and JSON Lines are appended and flushed row by row (a row is one ``write``, so a kill leaves at most one partial
last line, which the reader drops); a ``.json`` array is rewritten atomically (temporary file + rename) every 2 seconds
or 16 rows and at the end, so it is always valid JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path

SUFFIXES = (".csv", ".jsonl", ".json")
# The columns that must agree for a resumed run to continue the same scoring.
OPTION_COLUMNS = ("backbone", "block", "heads", "aggregation", "tokens", "weights_sha256", "precision")


class OutputError(ValueError):
    """An --out path that cannot work, reported before any image is scored."""


def check_output(out: str | None, resume: bool = False) -> Path | None:
    """Validate ``--out`` before any work: a file (not a folder) in an existing folder, with a known suffix."""
    if out is None:
        if resume:
            raise OutputError("--resume needs --out FILE (the file to continue).")
        return None
    path = Path(out)
    if path.is_dir():
        raise OutputError(f"--out {path} is a folder; give a file name, e.g. {path / 'scores.csv'}.")
    if path.suffix.lower() not in SUFFIXES:
        raise OutputError(f"--out {path}: use a .csv, .jsonl or .json file name.")
    if not path.parent.is_dir():
        raise OutputError(f"--out {path}: the folder {path.parent} does not exist; create it first.")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"--out {path} is not writable.")
    return path


def read_rows(path: Path) -> list[dict]:
    """Rows of an earlier (possibly killed) run; a partial last line is dropped."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            return list(json.loads(text))
        except json.JSONDecodeError as error:
            raise OutputError(f"{path} is not valid JSON ({error}); it cannot be resumed.") from None
    if path.suffix.lower() == ".jsonl":
        rows = []
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # the partial line a kill left
        return rows
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # the partial line a kill left
    reader = csv.DictReader(io.StringIO("".join(lines)))
    return [row for row in reader if None not in row and all(v is not None for v in row.values())]


class RowWriter:
    """``with RowWriter(path, fields, resume) as rows: rows.write({...})``; ``rows.done`` = paths already written."""

    def __init__(self, path: Path | None, fields: list[str], resume: bool = False, options: dict | None = None) -> None:
        self.path, self.fields = path, fields
        self.rows: list[dict] = read_rows(path) if (resume and path is not None) else []
        if resume and self.rows and options:
            self._check_options(options)
        self.done = {str(row["path"]) for row in self.rows}
        self._last_json_write, self._rows_in_json = 0.0, 0
        self._handle = None
        if path is None:
            self._writer = csv.DictWriter(sys.stdout, fieldnames=fields)
            self._writer.writeheader()
        elif path.suffix.lower() == ".csv":
            self._rewrite_csv()  # drops a partial last line; header first
            self._handle = path.open("a", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._handle, fieldnames=fields)
        elif path.suffix.lower() == ".jsonl":
            self._handle = path.open("w", encoding="utf-8")
            for row in self.rows:
                self._handle.write(json.dumps(row) + "\n")
            self._handle.flush()
        else:
            self._write_json()

    def _check_options(self, options: dict) -> None:
        earlier = next((row for row in self.rows if not row.get("error")), None)
        if earlier is None:
            return
        different = [f"{key} {earlier.get(key)!r} -> {options[key]!r}" for key in OPTION_COLUMNS
                     if key in options and str(earlier.get(key, "")) != str(options[key])]
        if different:
            raise OutputError(f"{self.path} was written with other options ({'; '.join(different)}); resume with the "
                              f"same options, or write to another --out.")

    def _rewrite_csv(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(temporary, self.path)

    def _write_json(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.rows, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)  # atomic: the file is always a complete JSON array
        self._last_json_write = time.monotonic()
        self._rows_in_json = len(self.rows)

    def write(self, row: dict) -> None:
        row = {key: row.get(key) for key in self.fields}  # every row has every column (None / empty when absent)
        self.rows.append(row)
        self.done.add(str(row["path"]))
        if self.path is None or self.path.suffix.lower() == ".csv":
            self._writer.writerow(row)
            (self._handle or sys.stdout).flush()
        elif self.path.suffix.lower() == ".jsonl":
            self._handle.write(json.dumps(row) + "\n")
            self._handle.flush()
        elif time.monotonic() - self._last_json_write > 2.0 or len(self.rows) - self._rows_in_json >= 16:
            self._write_json()

    def close(self) -> None:
        if self.path is not None and self.path.suffix.lower() == ".json":
            self._write_json()
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
