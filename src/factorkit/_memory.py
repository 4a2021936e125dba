"""Memory estimates checked before large allocations.

A computation that can be sized in advance (a G&C chunk, an SMC population, a dense copy of a
sparse matrix) calls :func:`check_memory` first, so a request that cannot fit is refused at once
with the estimate and the memory available, instead of swapping the machine down or dying
part-way. The limit is the memory the system reports available, or ``FACTORKIT_MAX_MEMORY``
(bytes, or a number with K/M/G/T) when set, which is what the CLI's ``--max-memory`` sets.
"""

from __future__ import annotations

import os
import re

UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """``'8G'``, ``'512M'``, ``'1.5T'`` or a plain byte count, as bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"a memory size must be a number with an optional K/M/G/T unit, got {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def available_memory() -> int:
    """Bytes available to new allocations: ``MemAvailable`` on Linux, else physical memory."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic systems
        return 2**62


def memory_limit() -> int:
    """``FACTORKIT_MAX_MEMORY`` when set, else :func:`available_memory`."""
    given = os.environ.get("FACTORKIT_MAX_MEMORY")
    return parse_size(given) if given else available_memory()


def format_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def check_memory(what: str, nbytes: float) -> None:
    """Refuse (``MemoryError``) when ``what`` needs more than :func:`memory_limit`."""
    limit = memory_limit()
    if nbytes > limit:
        source = (
            "FACTORKIT_MAX_MEMORY / --max-memory" if os.environ.get("FACTORKIT_MAX_MEMORY") else "available"
        )
        raise MemoryError(
            f"{what} needs about {format_size(nbytes)}, more than the {format_size(limit)} {source}; "
            "make it smaller, or raise the limit with --max-memory (FACTORKIT_MAX_MEMORY)"
        )
