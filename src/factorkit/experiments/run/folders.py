"""A study's folder: held by one process at a time, describing one config, growing only by seeds
or grid values; shards of a partly stored run."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import replace
from pathlib import Path

from factorkit._files import prepare_folder
from factorkit.experiments.config import StudyConfig


def prepare_folders(outs: list[Path]) -> None:
    """Create the folders, each a distinct directory (refused by name otherwise)."""
    folders = [out.resolve() for out in outs]
    if len(set(folders)) < len(folders):
        raise ValueError("every study needs its own folder; two were given the same out=")
    for out in outs:
        prepare_folder(out)


@contextlib.contextmanager
def folder_lock(out: Path):
    """Hold ``out/.lock`` for the whole run: a second study on the same folder is refused at once
    (no run computed twice). The lock dies with its process, SIGKILL included."""
    handle = (out / ".lock").open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise RuntimeError(
                f"another study is running in {out} (pid {holder}); wait for it or use another folder (out=)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def claim_folder(config: StudyConfig, out: Path) -> None:
    """Make ``out`` the folder of ``config``: write its ``study.json``, or refuse when the folder
    already holds another config (a folder describes one study; rows of two configs are never
    pooled). Growing the study (more seeds, more values on a grid axis, every setting else equal)
    is the same study: every stored row is one of its runs."""
    path = out / "study.json"
    if path.is_file():
        try:
            stored = StudyConfig.from_stored(json.loads(path.read_text()))
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"{path} does not hold a readable study config ({err}); use another folder (out=)"
            ) from err
        changes = stored.differences(config)
        if changes and not extends(stored, config):
            shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
            raise ValueError(
                f"{out} holds study {stored.name!r} run with another config ({shown}). A study folder "
                "holds one config: give this one its own folder (out=), or move that one aside to start over"
            )
    path.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))


def extends(stored: StudyConfig, config: StudyConfig) -> bool:
    """Whether ``config`` is ``stored`` with seeds or grid values added and nothing else changed."""
    if not set(stored.seeds) <= set(config.seeds) or set(stored.grid) != set(config.grid):
        return False
    if any(not set(values) <= set(config.grid[key]) for key, values in stored.grid.items()):
        return False
    return not replace(stored, seeds=config.seeds, grid=config.grid, description="").differences(
        replace(config, description="")
    )


def all_shards(payloads: dict[int, dict]) -> list[dict] | None:
    """The payloads of a run in shard order once every shard is in, else None."""
    shards = next(iter(payloads.values()))["shards"]
    return [payloads[i] for i in range(shards)] if len(payloads) == shards else None


def stored_layout(payloads: dict[int, dict]) -> tuple[int, int]:
    """``(chunk_size, chunks per shard)`` of a partly stored sharded run, from its payloads."""
    payload = next(iter(payloads.values()))
    chunk_size = payload["extra"]["chunk_size"]
    if payload["shard"] < payload["shards"] - 1 or payload["shards"] == 1:
        return chunk_size, payload["extra"]["chunks"] - payload["extra"]["first_chunk"]
    # the last shard starts at chunk (shards - 1) * chunks per shard
    return chunk_size, payload["extra"]["first_chunk"] // (payload["shards"] - 1)
