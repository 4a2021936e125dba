"""The results store: one SQLite row per (cell, seed) run, committed as soon as it finishes.

A G&C run split into shards (see :func:`factorkit.experiments.run.run_study`) also keeps one row
per finished shard in the ``shards`` table, so an interrupted run resumes from its last shard.
"""

from __future__ import annotations

import json
import platform
import sqlite3
import time
from pathlib import Path

import numpy
import scipy
import torch

import factorkit

RESULTS_FILE = "results.sqlite"

COLUMNS = {
    "key": "TEXT PRIMARY KEY",
    "study": "TEXT",
    "method": "TEXT",
    "seed": "INTEGER",
    "width": "INTEGER",
    "depth": "INTEGER",
    "activation": "TEXT",
    "m": "INTEGER",
    "m2": "INTEGER",
    "rank": "INTEGER",
    "n": "INTEGER",
    "measurements": "TEXT",
    "outliers": "REAL",
    "loss": "TEXT",
    "optimizer": "TEXT",
    "eps_train": "REAL",
    "prior": "TEXT",
    "eps": "REAL",
    "sampler": "TEXT",
    "status": "TEXT",
    "gen_loss": "REAL",
    "gen_loss_ci_low": "REAL",
    "gen_loss_ci_high": "REAL",
    "gen_loss_median": "REAL",
    "train_loss": "REAL",
    "rel_error": "REAL",
    "accepted": "INTEGER",
    "evaluations": "INTEGER",
    "acceptance_rate": "REAL",
    "prior_gen_loss": "REAL",
    "nuclear_gen_loss": "REAL",
    "nuclear_rel_error": "REAL",
    "log_volume": "REAL",
    "log_volume_se": "REAL",
    "ess": "REAL",
    "log_density": "REAL",
    "weight_spread": "REAL",
    "pareto_k": "REAL",
    "volume_curve": "TEXT",
    "pilot": "TEXT",
    "effort": "TEXT",
    "rank1_energy": "REAL",
    "rip_low": "REAL",
    "rip_high": "REAL",
    "steps": "INTEGER",
    "wall_time": "REAL",
    "settings": "TEXT",
    "versions": "TEXT",
    "finished_at": "TEXT",
}


def software_versions() -> dict:
    return {
        "factorkit": factorkit.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class DamagedStoreError(sqlite3.DatabaseError):
    """The results store is not a readable SQLite database (garbage, truncated, corrupt pages)."""


class ResultStore:
    """Append-only store of run rows in ``DIR/results.sqlite``; reopening resumes.

    A file that is not a sound SQLite database is refused (:class:`DamagedStoreError`) and left as
    it is: nothing is written to it.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / RESULTS_FILE
        self._connection = sqlite3.connect(self.path, timeout=30)
        try:
            check = self._connection.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as err:
            check = str(err)
        if check != "ok":
            self._connection.close()
            raise DamagedStoreError(
                f"the results store {self.path} is damaged ({check}); move it aside (its finished rows "
                "are lost unless a copy exists) and rerun to recompute, or restore a copy"
            )
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        self._connection.execute(f"CREATE TABLE IF NOT EXISTS runs ({columns})")
        # a store written by an older version lacks the newer columns: add them (NULL in old rows)
        present = {row[1] for row in self._connection.execute("PRAGMA table_info(runs)")}
        for name, kind in COLUMNS.items():
            if name not in present:
                self._connection.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        # shards of G&C runs split over workers: one row per finished shard, merged into `runs`
        # once every shard of the run is in
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS shards (key TEXT, shard INTEGER, payload TEXT, finished_at TEXT, "
            "PRIMARY KEY (key, shard))"
        )
        self._connection.commit()
        self._versions = json.dumps(software_versions())

    def finished_keys(self) -> set[str]:
        return {row[0] for row in self._connection.execute("SELECT key FROM runs")}

    def write(self, row: dict) -> None:
        """Insert one finished run and commit at once, so an interrupt loses nothing finished."""
        row = {**row, "versions": self._versions, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"row has unknown columns {sorted(unknown)}")
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._connection.execute(
            f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})", tuple(row.values())
        )
        self._connection.commit()

    def write_shard(self, key: str, shard: int, payload: dict) -> None:
        """Store one finished shard of run ``key`` and commit at once."""
        self._connection.execute(
            "INSERT OR REPLACE INTO shards (key, shard, payload, finished_at) VALUES (?, ?, ?, ?)",
            (key, shard, json.dumps(payload), time.strftime("%Y-%m-%dT%H:%M:%S")),
        )
        self._connection.commit()

    def shard_payloads(self) -> dict[str, dict[int, dict]]:
        """Stored shards: ``{run key: {shard index: payload}}``."""
        shards: dict[str, dict[int, dict]] = {}
        for key, shard, payload in self._connection.execute("SELECT key, shard, payload FROM shards"):
            shards.setdefault(key, {})[shard] = json.loads(payload)
        return shards

    def rows(self) -> list[dict]:
        cursor = self._connection.execute("SELECT * FROM runs ORDER BY rowid")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor]

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_rows(directory: str | Path) -> list[dict]:
    """All rows of the study in ``directory`` (raises if there is no results file)."""
    path = Path(directory) / RESULTS_FILE
    if not path.is_file():
        raise ValueError(f"no {RESULTS_FILE} in {str(directory)!r}: run `factorkit study` first")
    with ResultStore(directory) as store:
        return store.rows()
