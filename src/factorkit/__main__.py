"""``python -m factorkit``: the command-line tool."""

from factorkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
