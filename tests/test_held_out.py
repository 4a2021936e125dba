"""Defaults on held-out problems (issue 30): a small slice of ``benchmarks/held_out.py`` here; the
whole families are slow (``-m slow``) and their tallies are in ``docs/guide/real-data.md``."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def held_out():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("held_out", BENCHMARKS / "held_out.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["held_out"] = module  # its dataclasses (and worker processes) look it up by name
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("held_out", None)
        sys.path.remove(str(BENCHMARKS))


def problem(held_out, method: str, name: str):
    """The family's problem of that name (the family is fixed: a renamed problem fails here)."""
    (job,) = [job for label, _, job in held_out.FAMILIES[method]() if label == name]
    return job()


def test_bsc_finds_every_bar_where_a_single_start_merges_two(held_out):
    """5x5 bars at low noise, seed 4: the single start (the old default) ends with two bars in one
    atom; the default's best of ``n_init`` starts (highest free energy) finds all ten."""
    outcome = problem(held_out, "bsc", "bars 5x5 n=500 A=10 noise=0.1A seed=4")
    assert outcome.ours == 1.0 and outcome.anchor == 0.0 and outcome.verdict == "win"


@pytest.mark.parametrize(
    "name",
    [
        "lee_background whitespace df>=5 k=10",  # the table the issue built (BooleanMF lost 2% to Asso)
        "pang_lee_polarity.cor df>=3 k=10",  # lost 17.7% before Asso's start joined the candidates
    ],
)
def test_boolean_mf_is_never_worse_than_asso_on_these_tables(held_out, name):
    pytest.importorskip("gensim", reason="these tables are gensim's test corpora (the bench extra)")
    outcome = problem(held_out, "boolean", name)
    assert outcome.ours <= outcome.anchor, outcome


@pytest.mark.slow
def test_ebmf_beats_the_column_means_on_held_out_digits(held_out):
    """Column-standardized digits, 10% of the entries held out: EBMF's defaults predict them
    better than the column means (the issue's report was the other way round). About 50 s: the
    default suite runs the same comparison on wine below."""
    outcome = problem(held_out, "ebmf", "digits standardized seed=0")
    assert outcome.ours < outcome.anchor


@pytest.mark.parametrize("name", ["wine standardized seed=0", "diabetes standardized seed=1"])
def test_ebmf_beats_the_column_means_on_held_out_real_tables(held_out, name):
    """The digits comparison above on two small real tables (about 2 s each): held-out entries
    predicted better by EBMF's defaults than by the column means."""
    outcome = problem(held_out, "ebmf", name)
    assert outcome.ours < outcome.anchor, outcome


@pytest.mark.slow
def test_dictionary_learning_is_not_worse_than_scikit_learns_where_one_start_was(held_out):
    """Planted 20 atoms in 16-D at alpha 1: 100 iterations from samples stopped 2.8% above
    scikit-learn's objective; the defaults (the SVD start and three more, 1000 iterations) do not.
    About 13 s: the default suite compares the objective with scikit-learn's on digits
    (``test_sparse_coding.py``)."""
    outcome = problem(held_out, "dictionary", "planted 20 atoms in 16-D noise=0.1 alpha=1.0 seed=2")
    assert outcome.verdict != "loss", outcome


def test_outcome_verdicts_and_relative_loss(held_out):
    Outcome = held_out.Outcome
    assert Outcome("p", "g", 100.0, 100.4).verdict == "tie"  # within 0.5%
    assert (
        Outcome("p", "g", 90.0, 100.0).verdict == "win" and Outcome("p", "g", 90.0, 100.0).relative_loss < 0
    )
    assert Outcome("p", "g", 0.5, 0.6, higher_is_better=True).verdict == "loss"
    assert Outcome("p", "g", 0.5, 0.6, higher_is_better=True).relative_loss == pytest.approx(1 / 6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["bsc", "boolean", "ebmf"])
def test_whole_family_meets_its_row(held_out, method):
    """The issue's rows: BSC finds every bar on >= 95% of its family; BooleanMF loses to Asso on
    no real table; EBMF's default loses to the column means nowhere but its two known losses
    (column-standardized digits, seeds 1 and 2: a factor fitted to a handful of outlying pixels,
    ``docs/guide/real-data.md``; ``var_type='kronecker'`` has none, at a price elsewhere), so a
    new loss fails here and the row the issue asked for stays visibly unmet."""
    summary = held_out.run(method, workers=2)
    outcomes = summary["outcomes"]
    if method == "bsc":
        assert sum(o["ours"] for o in outcomes) >= 0.95 * len(outcomes)
    elif method == "boolean":
        assert not [o for o in outcomes if not o["group"].startswith("planted") and o["ours"] > o["anchor"]]
    else:
        losses = {o["problem"] for o in outcomes if held_out.Outcome(**o).verdict == "loss"}
        assert losses <= {"digits standardized seed=1", "digits standardized seed=2"}
