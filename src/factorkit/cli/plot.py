"""``factorkit plot``: tables, figures and ``report.html`` of a study folder."""

from __future__ import annotations

from pathlib import Path

from factorkit._choices import FIGURE_FORMATS
from factorkit.cli.common import positive_int


def add_output_options(command) -> None:
    """The figure options ``study`` and ``plot`` share."""
    command.add_argument("--format", choices=FIGURE_FORMATS, default="png", help="figure file format")
    command.add_argument("--dpi", type=positive_int, default=120, help="figure resolution (png)")


def add_parser(commands) -> None:
    plot = commands.add_parser("plot", help="write tables and figures of a study folder")
    plot.add_argument("directory", type=Path)
    add_output_options(plot)


def run(args) -> None:
    write_outputs(args.directory, args.format, args.dpi)


def write_outputs(directory: Path, fmt: str, dpi: int) -> None:
    """Tables, figures and the report of ``directory``, their paths printed."""
    from factorkit.experiments.plots import plot_study, plot_volumes
    from factorkit.experiments.report import write_report, write_tables

    options = {"fmt": fmt, "dpi": dpi}
    tables = write_tables(directory)
    figures = [p for p in (*plot_study(directory, **options), plot_volumes(directory, **options)) if p]
    # the report embeds PNGs: the ones just drawn, or (for pdf/svg) its own
    report = write_report(directory, figures if fmt == "png" else None)
    for path in (*tables, *figures, report):
        print(path)
