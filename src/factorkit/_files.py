"""Output folders: created and checked writable before any computing."""

from __future__ import annotations

from pathlib import Path


def prepare_folder(out: Path, name: str = "out") -> None:
    """Create ``out`` (a folder, not a file: refused naming the argument ``name``) and check that it
    is writable, before any computing."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{name}={str(out)!r} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".factorkit-write-test"
    probe.write_text("")
    probe.unlink()
