"""Human tables for the CLI: readable at 80 columns, everything in full with `--wide`.

Rules, whatever the terminal's width:
- a key column (a task name, a file path, a run id) is never cut, folded or ellipsised;
- times are short (`12-01 02:00`, in the host's zone, said once under the table);
- free text (descriptions, errors, fixes) wraps at word boundaries;
- every cell goes through terminal.escape_controls and is never read as rich markup, since
  much of it is task output.

When a row cannot fit on one line (a 64-character task name at 80 columns), its key goes on
a line of its own with the row's other columns below it, aligned with the rest of the
table; when no key fits its column at all, every row is printed that way under one header.
`--wide` prints every column at its natural width.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich import box
from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from agency_cron.terminal import escape_controls

GAP = 2  # between columns: one space of padding and the (blank) separator
INDENT = 2  # the values under a key line in the stacked layout
FOLD_FLOOR = 12  # the narrowest a wrapping column gets when its longest words must fold


@dataclass(frozen=True)
class Column:
    header: str
    wrap: bool = False  # free text that may wrap; other columns keep their width
    justify: JustifyMethod = "left"
    key: bool = False  # on the key line in the stacked layout (the first column always is)


def short_time(value: str | None) -> str:
    """ISO time -> `12-01 02:00` in the host's zone (`2025-12-01 02:00` in another year)."""
    if not value:
        return "-"
    from agency_cron.schedule import local_zone

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    zone = local_zone()
    moment = moment.astimezone(zone) if moment.tzinfo else moment
    same_year = moment.year == datetime.now(zone).year
    return moment.strftime("%m-%d %H:%M" if same_year else "%Y-%m-%d %H:%M")


def zone_note() -> str:
    """The caption saying which zone the short times are in."""
    from agency_cron.schedule import local_zone

    zone = local_zone()
    offset = datetime.now(zone).strftime("%z")
    return f"times in {zone.key} (UTC{offset[:3]}:{offset[3:]}); --wide for full times"


def cell(value) -> Text:
    """A table cell: Text as given, None as '-', anything else as escaped plain text."""
    if isinstance(value, Text):
        return value
    return Text(escape_controls("-" if value is None else str(value)))


def print_table(
    console: Console,
    columns: list[Column],
    rows: list[list],
    title: str | None = None,
    caption: str | None = None,
    wide: bool = False,
) -> None:
    """Print rows under columns; the first column is the key (see the module docstring)."""
    cells = [[cell(value) for value in row] for row in rows]
    if title:
        console.print(cell(title), no_wrap=True, crop=False, overflow="ignore")
    if wide:
        _print_wide(console, columns, cells)
    else:
        widths = fit_widths(columns, cells, console.width)
        if widths is not None:
            console.print(_table(columns, cells, widths))
        else:
            _print_stacked(console, columns, cells)
    if caption:
        console.print(cell(caption), style="dim")


def natural_widths(columns: list[Column], cells: list[list[Text]]) -> list[int]:
    return [
        max([cell_len(column.header)] + [_longest_line(row[i]) for row in cells])
        for i, column in enumerate(columns)
    ]


def fit_widths(
    columns: list[Column], cells: list[list[Text]], width: int, fold: bool = False
) -> list[int] | None:
    """Content widths that fit `width`, or None: wrapping columns shrink (widest first) down
    to their longest word (with `fold`, to FOLD_FLOOR: long words then fold); the others
    keep their natural width."""
    widths = natural_widths(columns, cells)
    floors = floor_widths(columns, cells, fold)
    excess = sum(widths) + GAP * (len(columns) - 1) - width
    while excess > 0:
        shrinkable = [i for i in range(len(widths)) if widths[i] > floors[i]]
        if not shrinkable:
            return None
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def floor_widths(columns: list[Column], cells: list[list[Text]], fold: bool = False) -> list[int]:
    """The narrowest each column may get (see fit_widths)."""
    widths = natural_widths(columns, cells)
    # A header never wraps: a column is at least as wide as its header.
    floors = [
        max([cell_len(c.header)] + [_longest_word(row[i]) for row in cells])
        if c.wrap
        else widths[i]
        for i, c in enumerate(columns)
    ]
    if not fold:
        return floors
    return [
        min(floor, max(FOLD_FLOOR, cell_len(c.header))) if c.wrap else floor
        for floor, c in zip(floors, columns, strict=True)
    ]


def _table(columns: list[Column], cells: list[list[Text]], widths: list[int]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column, width in zip(columns, widths, strict=True):
        table.add_column(
            column.header,
            width=width,
            justify=column.justify,
            no_wrap=not column.wrap,
            overflow="fold",
        )
    for row in cells:
        table.add_row(*row)
    return table


def _print_wide(console: Console, columns: list[Column], cells: list[list[Text]]) -> None:
    widths = natural_widths(columns, cells)
    full = sum(widths) + GAP * (len(columns) - 1)
    wide = Console(width=max(full, console.width), highlight=False, no_color=console.no_color)
    wide.print(_table(columns, cells, widths))


def _print_hybrid(console: Console, columns: list[Column], cells: list[list[Text]]) -> bool:
    """The key column as wide as the other columns allow: rows whose key fits stay table
    rows; a longer key goes on a line of its own, its row under it. False when no key fits."""
    rest, values = columns[1:], [row[1:] for row in cells]
    keys = [_longest_line(row[0]) for row in cells]
    # The other columns at full width if some keys still fit beside them, else narrowest.
    fitting: list[int] = []
    for rest_widths in (natural_widths(rest, values), floor_widths(rest, values)):
        budget = console.width - sum(rest_widths) - GAP * len(rest)
        fitting = [width for width in keys if width <= budget]
        if fitting:
            break
    key_width = max([cell_len(columns[0].header), *fitting])
    if not fitting or key_width > budget:
        return False  # no key would stay in its column: an empty column helps nobody
    room = console.width - key_width - GAP
    shrunk = fit_widths(rest, values, room)
    if shrunk is None:  # cannot happen (the chosen rest widths fit in room); stay safe
        return False
    widths = [key_width, *shrunk]
    console.print(_table(columns, [], widths))
    chunk: list[list[Text]] = []
    for row in cells:
        if _longest_line(row[0]) <= key_width:
            chunk.append(row)
            continue
        _print_rows(console, columns, chunk, widths)
        console.print(row[0], no_wrap=True, crop=False, overflow="ignore")
        chunk = [[Text(""), *row[1:]]]
    _print_rows(console, columns, chunk, widths)
    return True


def _print_rows(console, columns, rows: list[list[Text]], widths: list[int]) -> None:
    if rows:
        table = _table(columns, rows, widths)
        table.show_header = False
        console.print(table)


def _print_stacked(console: Console, columns: list[Column], cells: list[list[Text]]) -> None:
    """Each row's keys on a line of their own, its other columns under them, aligned under
    one header (when the key column alone cannot stay a column: see _print_hybrid)."""
    if not any(c.key for c in columns[1:]) and _print_hybrid(console, columns, cells):
        return
    keys = [i for i, c in enumerate(columns) if i == 0 or c.key]
    rest = [i for i in range(len(columns)) if i not in keys]
    values = [[row[i] for i in rest] for row in cells]
    shown = [columns[i] for i in rest]
    room = console.width - INDENT
    widths = fit_widths(shown, values, room) or fit_widths(shown, values, room, fold=True)
    widths = widths or natural_widths(shown, values)  # wider than the terminal: nothing cut
    console.print(Text("  ".join(columns[i].header for i in keys), style="bold"))
    console.print(Padding(_table(shown, [], widths), (0, 0, 0, INDENT)))
    for row, rest_cells in zip(cells, values, strict=True):
        key_line = Text("  ").join(row[i] for i in keys if row[i].plain.strip("- "))
        console.print(key_line, no_wrap=True, crop=False, overflow="ignore")
        table = _table(shown, [rest_cells], widths)
        table.show_header = False
        console.print(Padding(table, (0, 0, 0, INDENT)))


def _longest_line(text: Text) -> int:
    return max((cell_len(line) for line in text.plain.split("\n")), default=0)


def _longest_word(text: Text) -> int:
    return max((cell_len(word) for word in text.plain.split()), default=0)
