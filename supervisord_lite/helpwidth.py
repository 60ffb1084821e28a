"""argparse's help formatter, sized to the terminal without importing shutil.

argparse makes a formatter at every add_argument and asks shutil for the terminal's
width; shutil brings zlib, bz2 and lzma: milliseconds of every command, and 0.6 MB the
daemon kept for good (issue 16). Both CLIs use this one.
"""

from __future__ import annotations

import argparse
import os
import sys


class Formatter(argparse.HelpFormatter):
    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        width = terminal_columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


def terminal_columns() -> int:
    """As shutil.get_terminal_size().columns: $COLUMNS, else stdout's terminal, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    stdout = sys.__stdout__
    if stdout is None:
        return 80
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80
    except (ValueError, OSError):  # not a terminal
        return 80
