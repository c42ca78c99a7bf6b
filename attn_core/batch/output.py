"""Score rows written as they are produced: a killed run leaves a valid file, and ``--resume`` continues it.

CSV and JSON Lines are appended and flushed row by row (a row is one ``write``, so a kill leaves at most one partial
last line, which the reader drops); a ``.json`` array is rewritten atomically (temporary file + rename) every 2 seconds
or 16 rows and at the end, so it is always valid JSON.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import sys
import time
from pathlib import Path

SUFFIXES = (".csv", ".jsonl", ".json")
# The columns that must agree for a resumed run to continue the same scoring.
OPTION_COLUMNS = ("backbone", "block", "heads", "aggregation", "tokens", "weights_sha256", "precision")
# Columns only some runs have (``score --reference NAME``): absent or empty means none; they must agree too.
OPTIONAL_OPTION_COLUMNS = ("reference", "reference_sha256")


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


# File names are arbitrary bytes on POSIX: a name that is not valid UTF-8 arrives as a str with lone surrogates
# (os.fsdecode). CSV keeps those bytes as they were (surrogateescape) and is opened with newline="" so a \r or \n
# inside a quoted name survives; JSON escapes them (\udcff), so every format gives back the exact name.
ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}
REQUIRED_COLUMNS = ("path", "score", "error", *OPTION_COLUMNS)


def _refuse(path: Path, what: str) -> OutputError:
    return OutputError(f"{path} is not a score file of attn-fiqa ({what}); it was left as it is. Give another --out, "
                       f"or remove the file to start afresh.")


def _checked(path: Path, rows: list, where: str) -> list[dict]:
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            raise _refuse(path, f"{where} {number} is {json.dumps(row)[:60]}, not a row with a 'path'")
    return rows


def read_rows(path: Path) -> list[dict]:
    """Rows of an earlier (possibly killed) run; a partial last line is dropped; a file not written by us is refused."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with path.open("r", newline="", **ENCODING) as handle:
        text = handle.read()
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise OutputError(f"{path} is not valid JSON ({error}); it cannot be resumed.") from None
        if not isinstance(rows, list):
            raise _refuse(path, f"it holds a JSON {type(rows).__name__}, not a list of rows")
        return _checked(path, rows, "item")
    if path.suffix.lower() == ".jsonl":
        lines = text.split("\n")
        partial = lines.pop()  # "" after a complete file; else the partial line a kill left
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise _refuse(path, f"line {number} is not JSON") from None
        if partial.strip():
            try:
                rows.append(json.loads(partial))
            except json.JSONDecodeError:
                pass  # the partial line a kill left
        return _checked(path, rows, "line")
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        if text.endswith("\n"):
            raise _refuse(path, f"it is not CSV: {error}") from None
        records = list(csv.reader(io.StringIO(text[: text.rfind("\n") + 1], newline="")))
    if records and not text.endswith("\n"):
        records = records[:-1]  # the partial line a kill left
    if not records:
        return []
    header, body = records[0], records[1:]
    absent = [column for column in REQUIRED_COLUMNS if column not in header]
    if absent:
        raise _refuse(path, f"its header lacks the column(s) {', '.join(absent)}")
    for number, record in enumerate(body, 2):
        if len(record) != len(header):
            raise _refuse(path, f"line {number} has {len(record)} fields, the header {len(header)}")
    return [dict(zip(header, record)) for record in body]


def _disk_error(path: Path, error: OSError, rows_written: int) -> OutputError:
    reason = "the disk is full" if error.errno == errno.ENOSPC else f"it could not be written ({error.strerror or error})"
    return OutputError(f"{path}: {reason}; the file holds the first {rows_written} row(s). Free space and continue "
                       f"with --resume.")


class RowWriter:
    """``with RowWriter(path, fields, resume) as rows: rows.write({...})``; ``rows.done`` = paths already written.

    A write that fails (a full disk) raises OutputError saying how many rows the file holds; no temporary file stays.
    """

    def __init__(self, path: Path | None, fields: list[str], resume: bool = False, options: dict | None = None) -> None:
        self.path, self.fields = path, fields
        self.rows: list[dict] = read_rows(path) if (resume and path is not None) else []
        if resume and self.rows and options:
            self._check_options(options)
        self.done = {str(row["path"]) for row in self.rows}
        self._last_json_write, self._rows_in_json = 0.0, 0
        self._handle = None
        self._failed = False
        self.written = 0  # rows complete in the file
        if path is None:
            _surrogates_to_stdout()
            self._writer = csv.DictWriter(sys.stdout, fieldnames=fields)
            self._writer.writeheader()
        elif path.suffix.lower() == ".csv":
            self._guard(self._rewrite_csv)  # drops a partial last line; header first
            self._handle = path.open("a", newline="", **ENCODING)
            self._writer = csv.DictWriter(self._handle, fieldnames=fields)
        elif path.suffix.lower() == ".jsonl":
            self._guard(self._rewrite_jsonl)
            self._handle = path.open("a", **ENCODING)
        else:
            self._guard(self._write_json)
        self.written = len(self.rows)

    def _guard(self, action) -> None:
        try:
            action()
        except OSError as error:
            self._failed = True
            self._remove_temporary()
            raise _disk_error(self.path, error, self._rows_on_disk()) from None

    def _rows_on_disk(self) -> int:
        if self.path.suffix.lower() == ".json":
            return self._rows_in_json
        return self.written

    def _remove_temporary(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass

    def _check_options(self, options: dict) -> None:
        earlier = next((row for row in self.rows if not row.get("error")), None)
        if earlier is None:
            return
        different = [f"{key} {earlier.get(key)!r} -> {options[key]!r}" for key in OPTION_COLUMNS
                     if key in options and str(earlier.get(key, "")) != str(options[key])]
        different += [f"{key} {earlier.get(key) or 'none'!r} -> {options[key] or 'none'!r}"
                      for key in OPTIONAL_OPTION_COLUMNS if key in options
                      and str(earlier.get(key) or "") != str(options[key] or "")]
        if different:
            raise OutputError(f"{self.path} was written with other options ({'; '.join(different)}); resume with the "
                              f"same options, or write to another --out.")

    def _rewrite_csv(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", newline="", **ENCODING) as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(temporary, self.path)

    def _rewrite_jsonl(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", **ENCODING) as handle:
            handle.writelines(json.dumps(row) + "\n" for row in self.rows)
        os.replace(temporary, self.path)

    def _write_json(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", **ENCODING) as handle:
            handle.write(json.dumps(self.rows, indent=1))
        os.replace(temporary, self.path)  # atomic: the file is always a complete JSON array
        self._last_json_write = time.monotonic()
        self._rows_in_json = len(self.rows)

    def write(self, row: dict) -> None:
        row = {key: row.get(key) for key in self.fields}  # every row has every column (None / empty when absent)
        self.rows.append(row)
        self.done.add(str(row["path"]))
        if self.path is None:
            self._writer.writerow(row)
            sys.stdout.flush()
        elif self.path.suffix.lower() == ".csv":
            self._guard(lambda: (self._writer.writerow(row), self._handle.flush()))
            self.written += 1
        elif self.path.suffix.lower() == ".jsonl":
            self._guard(lambda: (self._handle.write(json.dumps(row) + "\n"), self._handle.flush()))
            self.written += 1
        elif time.monotonic() - self._last_json_write > 2.0 or len(self.rows) - self._rows_in_json >= 16:
            self._guard(self._write_json)

    def close(self) -> None:
        if self.path is not None and self.path.suffix.lower() == ".json" and not self._failed:
            self._guard(self._write_json)
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.close()
            except OSError:
                if not self._failed:
                    raise

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _surrogates_to_stdout() -> None:
    """Names that are not UTF-8 go to stdout as their own bytes instead of ending the run."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="surrogateescape")
        except (ValueError, OSError):
            pass
