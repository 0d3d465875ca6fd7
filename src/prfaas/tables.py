"""Rich tables that never cut a cell: the table when it fits, plain columns when it does not."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

UNBOUNDED = 1_000_000  # measure the table's natural width, not the width it is squeezed into


def _plain(cell: object) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def plain_lines(table: Table) -> list[str]:
    """The table as aligned plain-text columns (title, header, rule, rows); no cell is shortened."""
    columns = [
        [_plain(cell).replace("\n", " ") for cell in (col.header, *col.cells)]
        for col in table.columns
    ]
    widths = [max(len(cell) for cell in col) for col in columns]
    lines: list[str] = []
    if table.title is not None:
        lines.append(_plain(table.title))
    for r in range(len(columns[0]) if columns else 0):
        cells = []
        for col, spec, width in zip(columns, table.columns, widths, strict=True):
            text = col[r]
            cells.append(text.rjust(width) if spec.justify == "right" else text.ljust(width))
        lines.append("  ".join(cells).rstrip())
        if r == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def print_table(console: Console, table: Table) -> None:
    """console.print(table) when every column fits at its natural width; otherwise (a narrow
    terminal, COLUMNS=60, a CI log) plain columns that may run past the edge but keep every digit,
    where rich would squeeze numbers into "19,85…"."""
    unbounded = console.options.update_width(UNBOUNDED)
    natural = Measurement.get(console, unbounded, table).maximum
    if natural <= console.width:
        console.print(table)
        return
    for line in plain_lines(table):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
