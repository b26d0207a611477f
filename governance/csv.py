"""The one way the service writes CSV: every cell a spreadsheet would run as a formula is
defused first (CSV injection: a data use named `=HYPERLINK(...)` must open as text).

Nothing else calls `csv.writer` or `csv.DictWriter` (a test greps for it), so a new export
cannot forget the escaping.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO, Any

# What spreadsheets (Excel, LibreOffice, Google Sheets) read as the start of a formula, tab
# and carriage return included since some of them strip those before looking (OWASP).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """The cell as written: text that would start a formula gets a leading `'`, which
    spreadsheets show as text; other values are left alone (numbers stay numbers)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class _SafeRows:
    """Wraps a csv writer so every row, the header included, passes through csv_cell."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_dict_writer(out: IO[str], fieldnames: Sequence[str], **options: Any) -> csv.DictWriter[str]:
    """A `csv.DictWriter` over `out` whose cells (and header) are defused."""
    writer: csv.DictWriter[str] = csv.DictWriter(out, fieldnames=fieldnames, **options)
    writer.writer = _SafeRows(writer.writer)  # type: ignore[assignment]
    return writer
