"""Tables that keep one line per row at the width they are drawn at.

Rich squeezes a table that is too wide by wrapping its cells, down to one letter per line. A
FittedTable instead lays its columns out for the width it is given: every cell stays on one line;
a column that may be cut (`min_width`) is cut with an ellipsis, never below that width; when even
that does not fit, columns are dropped, lowest `drop_rank` first. Columns without a `drop_rank`
(ids, statuses) are always shown, and whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, JustifyMethod, RenderResult
from rich.table import Table
from rich.text import Text

Cell = str | Text  # a str is rich markup, as Table.add_row takes it


@dataclass(frozen=True)
class FitColumn:
    header: str
    cells: Sequence[Cell]
    drop_rank: int | None = None  # dropped when too narrow: 1 first, then 2, ...; None: never
    min_width: int | None = None  # may be cut with an ellipsis down to this; None: never cut
    max_width: int | None = None  # cut with an ellipsis beyond this, however wide the table
    justify: JustifyMethod = "left"

    @property
    def natural_width(self) -> int:
        natural = max(_cell_width(cell) for cell in [self.header, *self.cells])
        return natural if self.max_width is None else min(natural, self.max_width)

    @property
    def floor_width(self) -> int:
        natural = self.natural_width
        return natural if self.min_width is None else min(natural, self.min_width)


def _cell_width(cell: Cell) -> int:
    text = Text.from_markup(cell) if isinstance(cell, str) else cell
    return max((line.cell_len for line in text.split("\n")), default=0)


def fit_widths(columns: Sequence[FitColumn], width: int, gap: int, edge: int) -> list[int | None]:
    """Each column's width at this table width, None for a dropped column. `gap` is what
    separates two columns (padding, border), `edge` what the table adds at its two sides."""
    shown = list(range(len(columns)))

    def needed(indexes: list[int]) -> int:
        floors = sum(columns[index].floor_width for index in indexes)
        return floors + gap * max(len(indexes) - 1, 0) + edge

    droppable = sorted(
        (index for index in shown if columns[index].drop_rank is not None),
        key=lambda index: (columns[index].drop_rank, -index),
    )
    for index in droppable:
        if needed(shown) <= width:
            break
        shown.remove(index)
    widths: list[int | None] = [None] * len(columns)
    for index in shown:
        widths[index] = columns[index].floor_width
    # What is left is shared evenly by the columns that were cut, each up to its whole width.
    spare = width - needed(shown)
    while spare > 0:
        short = [index for index in shown if (widths[index] or 0) < columns[index].natural_width]
        if not short:
            break
        share = max(spare // len(short), 1)
        for index in short:
            current = widths[index] or 0
            grown = min(columns[index].natural_width, current + share, current + spare)
            spare -= grown - current
            widths[index] = grown
    return widths


class FittedTable:
    """A rich renderable: the table laid out for the width it is printed at (see the module
    docstring). `table_options` are rich Table's (box, title, header_style, ...)."""

    def __init__(
        self,
        columns: Sequence[FitColumn],
        row_styles: Sequence[str | None] | None = None,
        **table_options: Any,
    ) -> None:
        self.columns = list(columns)
        self.row_styles = list(row_styles) if row_styles is not None else None
        self.table_options = table_options

    def table(self, width: int) -> Table:
        """The rich Table for this width."""
        table = Table(**self.table_options)
        gap, edge = _spacing(table)
        widths = fit_widths(self.columns, width, gap, edge)
        shown = [
            (column, column_width)
            for column, column_width in zip(self.columns, widths, strict=True)
            if column_width is not None
        ]
        for column, column_width in shown:
            table.add_column(
                column.header,
                width=column_width,
                no_wrap=True,
                overflow="ellipsis",
                justify=column.justify,
            )
        rows = len(self.columns[0].cells) if self.columns else 0
        for row in range(rows):
            style = self.row_styles[row] if self.row_styles is not None else None
            table.add_row(*(column.cells[row] for column, _ in shown), style=style)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)


def _spacing(table: Table) -> tuple[int, int]:
    """(between two columns, at the two sides together): padding, and borders when boxed."""
    _, right, _, left = table.padding
    gap, edge = left + right, (left + right) if table.pad_edge else 0
    if table.box is not None:
        gap += 1
        edge += 2 if table.show_edge else 0
    return gap, edge
