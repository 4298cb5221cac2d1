"""Reading data files: delimited or whitespace-separated text (optionally gzipped) and ``.npy`` arrays.

Every problem a new user could meet becomes one ``ValueError`` that names the file, the place, what
was detected and what to do. :func:`kmeans_limit.io.read_data` is the public entry point.
"""

from __future__ import annotations

import csv
import gzip
import math
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .datasets import Dataset
from .inference.validation import as_data

__all__ = ["MISSING", "TextFormat", "detect_format", "read_npy", "read_text"]

#: Text that reads as a missing value in a data file.
MISSING = frozenset({"", "na", "nan", "n/a", "null", "none", "?", "-"})
GZIP_MAGIC = b"\x1f\x8b"
#: A number written with a decimal comma: ``1,5``, ``-0,25``, ``3,1e-2``.
_DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")


class TextFormat(NamedTuple):
    """How a text file's fields are separated: ``delimiter`` (None: runs of whitespace) and a name."""

    delimiter: str | None
    name: str

    def split(self, lines: Sequence[str]) -> list[list[str]]:
        if self.delimiter is None:
            return [line.split() for line in lines]
        return [[field.strip() for field in row] for row in csv.reader(lines, delimiter=self.delimiter)]


COMMA = TextFormat(",", "comma-separated")
FORMATS = {",": COMMA, ";": TextFormat(";", "semicolon-separated"), "\t": TextFormat("\t", "tab-separated")}
WHITESPACE = TextFormat(None, "whitespace-separated")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _decimal_commas(path: Path, lines: Sequence[str]) -> None:
    """Refuse numbers written with decimal commas (``1,5;2,5`` or ``1,5<TAB>2,5``), saying so."""
    for separator, name in ((";", "semicolons"), ("\t", "tabs"), (None, "spaces")):
        rows = [line.split(separator) for line in lines]
        fields = [field.strip() for row in rows if len(row) > 1 for field in row]
        if not fields or separator is not None and not all(separator in line for line in lines[1:]):
            continue
        numeric = [f for f in fields if _DECIMAL_COMMA.fullmatch(f) or _INTEGER.fullmatch(f)]
        if any(_DECIMAL_COMMA.fullmatch(f) for f in numeric) and len(numeric) >= len(fields) // 2:
            example = next(f for f in fields if _DECIMAL_COMMA.fullmatch(f))
            raise ValueError(
                f"'{path}' holds numbers with decimal commas ({example!r}) separated by {name}; "
                "decimal commas are not read: write the numbers with '.' as the decimal mark "
                "(e.g. export as CSV with a '.' decimal separator)"
            )


def detect_format(path: Path, lines: Sequence[str]) -> TextFormat:
    """The field separator of a text file from its first lines.

    A tab for ``.tsv``/``.tab``; otherwise ``,``, ``;`` or a tab when the first line and at least
    half of the first 20 hold it (the one ``csv.Sniffer`` finds consistent, else the commonest); otherwise runs of
    whitespace (the sipu ``.data`` files, ``numpy.savetxt``'s default, columns padded with spaces
    or tabs). Numbers with decimal commas are refused.
    """
    if path.suffix.lower() in (".tsv", ".tab"):
        return FORMATS["\t"]
    sample = list(lines[:20])
    _decimal_commas(path, sample)
    present = [d for d in ",;\t" if d in sample[0] and 2 * sum(d in line for line in sample) >= len(sample)]
    if not present:
        return WHITESPACE
    try:
        return FORMATS[csv.Sniffer().sniff("\n".join(sample), delimiters="".join(present)).delimiter]
    except csv.Error:
        return FORMATS[max(present, key=lambda d: sum(line.count(d) for line in sample))]


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(
                f"'{path}' is a corrupt gzip file ({error}); download or compress it again"
            ) from None
    if b"\x00" in raw[:4096]:
        raise ValueError(f"'{path}' is not a text file (it holds binary data); give a CSV, TSV or .npy file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"'{path}' is not a text file (not UTF-8); give a CSV, TSV or .npy file") from None


def _read_rows(path: Path) -> tuple[list[tuple[int, list[str]]], TextFormat]:
    """Non-blank, non-comment rows of a text file, with their line numbers, and the format read."""
    numbered = [(i, line) for i, line in enumerate(_decode(path).splitlines(), 1)]
    numbered = [(i, line) for i, line in numbered if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise ValueError(f"data file '{path}' is empty; it needs at least one row of numbers")
    text_format = detect_format(path, [line for _, line in numbered])
    rows = text_format.split([line for _, line in numbered])
    return [(i, row) for (i, _), row in zip(numbered, rows, strict=True)], text_format


def _parse_float(text: str, where: str, text_format: TextFormat) -> float:
    stripped = text.strip()
    if stripped.lower() in MISSING:
        raise ValueError(f"{where} is missing ({text!r}); remove or impute the rows with missing values")
    try:
        value = float(stripped)
    except ValueError:
        raise ValueError(
            f"{where} holds {text!r}, which is not a number; choose numeric columns with --columns "
            f"(the file was read as {text_format.name})"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{where} holds {text!r}; every value must be a finite number")
    return value


def select_columns(names: Sequence[str], columns: Sequence[str] | None) -> list[int]:
    """Indices of the chosen columns: each one a header name or a 0-based index."""
    if columns is None:
        return list(range(len(names)))
    if not columns:
        raise ValueError("--columns selects no column; give names or 0-based indices, e.g. --columns 0,2")
    chosen = []
    for column in columns:
        if column in names:
            chosen.append(names.index(column))
        elif column.isdigit() and int(column) < len(names):
            chosen.append(int(column))
        else:
            raise ValueError(
                f"column {column!r} not found; the columns are {', '.join(names)} "
                f"(or 0-based indices 0..{len(names) - 1})"
            )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"--columns {','.join(columns)} names a column twice; name each column once")
    return chosen


def read_text(path: Path, columns: Sequence[str] | None) -> Dataset:
    """A delimited or whitespace-separated text file (gzipped or not) as float64 (see ``read_data``)."""
    rows, text_format = _read_rows(path)
    line, first = rows[0]
    numeric = [_is_number(field) for field in first]
    has_header = not any(numeric)
    if not has_header and not all(numeric):
        bad = first[numeric.index(False)]
        raise ValueError(
            f"'{path}' line {line} mixes numbers and text ({bad!r}): a header line needs a name in every "
            "field, a data line a number in every field; fill in or remove missing values "
            f"(the file was read as {text_format.name})"
        )
    names = first if has_header else [f"x{j}" for j in range(len(first))]
    body = rows[1:] if has_header else rows
    if not body:
        raise ValueError(f"data file '{path}' has a header line but no rows of data")
    chosen = select_columns(names, columns)
    values = []
    for line, row in body:
        if len(row) != len(names):
            raise ValueError(
                f"'{path}' line {line} has {len(row)} fields but the first line has {len(names)}; "
                f"every row needs the same number of fields (the file was read as {text_format.name})"
            )
        values.append(
            [_parse_float(row[j], f"'{path}' line {line}, column {names[j]!r},", text_format) for j in chosen]
        )
    data = torch.tensor(values, dtype=torch.float64)
    return Dataset(data, tuple(names[j] for j in chosen))


def read_npy(path: Path, columns: Sequence[str] | None) -> Dataset:
    """A NumPy ``.npy`` array (no pickles) as float64 (see ``read_data``)."""
    with path.open("rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            raise ValueError(f"'{path}' is not a valid .npy file (no NumPy header); write it with np.save")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise ValueError(f"'{path}' holds Python objects; save a numeric array with np.save") from None
        raise ValueError(f"'{path}' is not a valid .npy file ({error})") from None
    except (OSError, EOFError) as error:
        raise ValueError(f"'{path}' is not a valid .npy file ({error})") from None
    if not isinstance(array, np.ndarray) or array.dtype.names is not None or array.dtype.kind not in "biuf":
        raise ValueError(f"'{path}' holds a {array.dtype} array; save a plain numeric array with np.save")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"'{path}' holds an array of shape {array.shape}; it should be 2-D (rows, columns)")
    names = [f"x{j}" for j in range(array.shape[1])]
    chosen = select_columns(names, columns)
    data = as_data(torch.as_tensor(array[:, chosen].astype(np.float64)), f"'{path}'")
    return Dataset(data, tuple(names[j] for j in chosen))
