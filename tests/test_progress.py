"""Progress off a terminal: whole lines (done of total, elapsed, remaining), never carriage returns."""

import io
import re

import pytest

from factorkit._progress import LineProgress, progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr("factorkit._progress.time.monotonic", fake)
    return fake


def test_lines_at_most_one_per_interval_with_elapsed_and_remaining(clock):
    stream = io.StringIO()
    bar = LineProgress(total=100, desc="study", unit="runs", every=60, stream=stream)
    clock.now = 30.0
    bar.update(10)  # before the first minute: nothing
    assert stream.getvalue() == ""
    clock.now = 61.0
    bar.update(10)  # 20 of 100 in 61 s: 244 s to go
    clock.now = 90.0
    bar.update(30)  # within a minute of the last line: nothing
    clock.now = 125.0
    bar.update(30)
    clock.now = 130.0
    bar.update(20)
    bar.close()  # lines were written and the count moved since: the end is written too
    lines = stream.getvalue().splitlines()
    assert lines == [
        "study: 20/100 runs, 01:01 elapsed, ~04:04 remaining",
        "study: 80/100 runs, 02:05 elapsed, ~00:31 remaining",
        "study: 100/100 runs, 02:10 elapsed, ~00:00 remaining",
    ]
    assert "\r" not in stream.getvalue()


def test_a_short_run_writes_nothing_and_every_zero_writes_each_update(clock):
    quiet = io.StringIO()
    with LineProgress(total=5, desc="g&c", every=60, stream=quiet) as bar:
        bar.update(5)
    assert quiet.getvalue() == ""
    each = io.StringIO()
    with LineProgress(total=3, desc="cells", unit="runs", every=0, stream=each) as bar:
        for _ in range(3):
            clock.now += 1
            bar.update(1)
    assert [line.split(",")[0] for line in each.getvalue().splitlines()] == [
        "cells: 1/3 runs",
        "cells: 2/3 runs",
        "cells: 3/3 runs",
    ]


def test_progress_is_lines_off_a_terminal_and_silent_when_disabled(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    assert isinstance(progress(10, "x"), LineProgress)
    silent = progress(10, "x", enabled=False)
    silent.update(10)
    silent.close()
    assert silent.n == 10 and not isinstance(silent, LineProgress)


def test_a_study_writes_a_line_per_finished_run_to_a_captured_stderr(tmp_path, monkeypatch, capsys):
    from factorkit.experiments import StudyConfig, run_study
    from factorkit.experiments.run import coordinator as runner

    monkeypatch.setattr(runner, "STUDY_LINE_EVERY", 0.0)
    config = StudyConfig.from_dict(
        {
            "name": "lines",
            "seeds": 2,
            "problem": {"m": 4, "m2": 4, "n": 8},
            "grid": {"width": [3], "depth": [2], "activation": ["linear"], "method": ["gc"]},
            "gc": {"eps": 0.5, "draws": 2000, "min_accepted": 1},
        }
    )
    run_study(config, tmp_path, workers=1)  # progress=None: lines, since stderr is captured
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lines:")]
    assert len(lines) == 2
    assert re.fullmatch(r"lines: 2/2 runs, \d\d:\d\d elapsed, ~\d\d:\d\d remaining", lines[-1])
