"""The ``factorkit`` command line: it parses, calls the library, and prints.

One module per command (``study``, ``plot``, ``sample``, ``train``, ``fit``, ``embed``), each with
its parser section (``add_parser``) and its handler (``run``); what they share is in
:mod:`factorkit.cli.common`. Every invalid argument ends with exit status 2 and a single line
``factorkit: error: ...`` naming the option; runtime failures with status 1; an interrupt with 130.
The heavy modules are imported inside the handlers, so ``--help`` and ``--version`` stay instant.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import zipfile

from factorkit import __version__
from factorkit.cli import embed, fit, plot, sample, study, train
from factorkit.cli.common import Parser, memory_size

COMMANDS = {"study": study, "plot": plot, "sample": sample, "train": train, "fit": fit, "embed": embed}


def build_parser() -> Parser:
    parser = Parser(prog="factorkit", description="Matrix factorization research toolkit.")
    parser.add_argument("--version", action="version", version=f"factorkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(commands)
    for command in commands.choices.values():
        command.add_argument(
            "--max-memory",
            type=memory_size,
            default=None,
            help="refuse work estimated above this (e.g. 8G; default: the memory available)",
        )
    return parser


_build_parser = build_parser  # the name tests/test_cli.py checks stays torch-free


def as_flags(message: str, options) -> str:
    """A library error in the command's terms: an argument written ``name=value`` that is one of
    the command's ``options`` reads ``--name value`` (the library speaks of arguments, the user typed
    flags)."""

    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if name not in options:
            return match.group(0)
        return f"--{name.replace('_', '-')}" + (f" {value.strip(chr(39))}" if value else "")

    return re.sub(r"\b([a-z_]+)=('[^']*'|[^\s,;)]*)", flag, message)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    limit = os.environ.get("FACTORKIT_MAX_MEMORY")
    if args.max_memory is not None:  # read by every size check, in this process and its workers
        os.environ["FACTORKIT_MAX_MEMORY"] = args.max_memory
    previous = _terminate_as_interrupt()
    try:
        COMMANDS[args.command].run(args)
    except (ValueError, TypeError) as err:
        print(f"factorkit: error: {as_flags(_one_line(err), vars(args))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("factorkit: interrupted; finished runs are saved, rerun to resume", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, MemoryError, sqlite3.DatabaseError, zipfile.BadZipFile, EOFError) as err:
        # runtime failures (unreadable or unwritable files, a damaged store, a device that cannot
        # run): one line, exit 1, never a traceback
        print(f"factorkit: error: {as_flags(_one_line(err), vars(args))}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if args.max_memory is not None:  # main() may be called again in this process
            if limit is None:
                os.environ.pop("FACTORKIT_MAX_MEMORY", None)
            else:
                os.environ["FACTORKIT_MAX_MEMORY"] = limit
    return 0


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text


def _terminate_as_interrupt():
    """SIGTERM stops a command as Ctrl-C does (finished runs kept, worker processes shut down).

    Returns the previous handler to restore, or None where it cannot be set (not the main thread).
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None
