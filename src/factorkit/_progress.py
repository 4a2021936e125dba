"""Progress of long runs: a tqdm bar on a terminal, plain lines in a log.

A bar redraws itself with carriage returns, which a log file, ``nohup``, a scheduler or CI keeps
as one endless line or drops altogether; so where standard error is not a terminal the same
progress is written as whole lines (done of total, elapsed, expected remaining), at most one per
``every`` seconds, plus a last line when the run ends if any line was written. A run shorter than
``every`` writes nothing. ``every=0`` writes a line at each update (a study: one per finished cell).

``enabled``: ``True`` or ``False`` force the reporter on or off; ``None`` (the default of the
commands) means on, as a bar on a terminal and as lines elsewhere. tqdm is imported only where a
bar is drawn, so a cold start off a terminal does not pay for it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class LineProgress:
    """Progress as whole lines on ``stream`` (standard error by default); see the module docstring."""

    def __init__(
        self,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        every: float = 60.0,
        stream: TextIO | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.every = every
        self.stream = stream
        self.n = 0.0
        self.start = time.monotonic()
        self.last = self.start
        self.lines = 0
        self.written = 0.0  # the count the last line showed

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self._write(now)

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def _write(self, now: float) -> None:
        elapsed = now - self.start
        done = f"{self.n:g}" if self.total is None else f"{self.n:g}/{self.total:g}"
        text = f"{self.desc}: {done} {self.unit}, {_clock(elapsed)} elapsed"
        if self.total and self.n > 0:
            remaining = elapsed * max(self.total - self.n, 0.0) / self.n
            text += f", ~{_clock(remaining)} remaining"
        stream = self.stream if self.stream is not None else sys.stderr
        print(text, file=stream, flush=True)
        self.last = now
        self.lines += 1
        self.written = self.n

    def close(self) -> None:
        if self.lines and self.n != self.written:
            self._write(time.monotonic())

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Silent:
    """A reporter that reports nothing (``enabled=False``)."""

    n = 0.0

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc) -> None:
        pass


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def progress(
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    *,
    enabled: bool | None = None,
    every: float = 60.0,
    bar_format: str | None = None,
):
    """A progress reporter with ``update(n)``, ``set_description``, ``close`` and ``with`` support:
    a tqdm bar when standard error is a terminal, :class:`LineProgress` otherwise, nothing when
    ``enabled`` is False."""
    if enabled is False:
        return _Silent()
    if "ipykernel" in sys.modules:  # a notebook: tqdm's widget, not lines
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit)
    if is_terminal():
        from tqdm import tqdm

        options = {} if bar_format is None else {"bar_format": bar_format}
        return tqdm(total=total, desc=desc, unit=unit, **options)
    return LineProgress(total, desc, unit, every)
