"""The front page quotes only figures that ``benchmarks/headline.json`` holds (issue 27).

Every number on the README and on the docs' start page that reads as a measurement (a ratio
``N×``, a time ``N s`` / ``N min``, a rate ``NM``, a percentage) must be one of the quoted strings
``python benchmarks/headline.py`` wrote with its measurement, so a claim cannot drift away from it.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# a ratio, a rate in millions, a time, a percentage, or a score written 0.xx
FIGURE = re.compile(r"[~+−-]?\d[\d.,]*(?:–\d[\d.,]*)?(?:×|M\b| s\b| min\b|%)|\b0\.\d\d\b")


def quoted(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets (file names, anchors) are not figures
    text = re.sub(r"!\[[^\]]*\]", "", text)
    return FIGURE.findall(text)


def measured() -> set[str]:
    data = json.loads((ROOT / "benchmarks" / "headline.json").read_text())
    return {quote for figure in data["figures"].values() for quote in figure["quotes"].values()}


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_every_figure_on_the_front_pages_is_in_headline_json(page):
    figures = quoted(ROOT / page)
    assert figures, f"{page} quotes no figure: the pattern no longer matches how figures are written"
    missing = [figure for figure in figures if figure not in measured()]
    assert not missing, (
        f"{page} quotes {missing}, which benchmarks/headline.json does not hold; re-run "
        "`python benchmarks/headline.py` and quote what it wrote"
    )


def test_headline_json_names_its_machine_and_command():
    data = json.loads((ROOT / "benchmarks" / "headline.json").read_text())
    assert {"cpu", "cores", "torch", "date"} <= set(data["machine"])
    assert data["command"].startswith("python benchmarks/headline.py")


def test_the_pattern_finds_the_kinds_of_figures_it_guards():
    sample = "QWEM 3.6–4.1× gensim, 1.1–1.3 s, ~1.5 min, 3.2–3.6M draws, +0.4%, 0.74, [x](a_2.5×.md)"
    text = re.sub(r"\]\([^)]*\)", "]", sample)
    assert FIGURE.findall(text) == ["3.6–4.1×", "1.1–1.3 s", "~1.5 min", "3.2–3.6M", "+0.4%", "0.74"]
