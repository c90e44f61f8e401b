"""Every CSV file the service writes (gradebooks, the new students' secrets) goes through `lines`.

A cell that starts with =, +, -, @, a tab or a carriage return is a formula to Excel, LibreOffice
and Google Sheets: a roster name such as `=HYPERLINK("http://evil.example", "x")` would run when
the instructor opens the gradebook (CSV injection). Such a text cell gets a leading single quote,
as OWASP advises, which spreadsheets show as text. Numbers, negative ones included, are not text:
they are left alone, so numeric columns stay numeric.
"""

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: object) -> object:
    """The value, with a quote before text that a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def lines(rows: Iterable[Sequence[object]], *, lineterminator: str = "\r\n") -> Iterator[str]:
    """The rows as CSV, a line at a time (a response streams them without the file ever being whole)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=lineterminator)
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
