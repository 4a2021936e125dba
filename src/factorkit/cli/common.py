"""What the commands share: the parser class, argument types, the problem options, the one
save / report / print tail, and the checks on results."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from factorkit._choices import ACTIVATIONS, MEASUREMENT_KINDS


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        self.exit(2, f"factorkit: error: {message}\n")


def int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def seed(text: str) -> int:
    """A seed: an integer in [0, 2^63) (what torch's and NumPy's generators take)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2^63), got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def memory_size(text: str) -> str:
    from factorkit._memory import parse_size

    try:
        return str(parse_size(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_problem_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("problem and model")
    group.add_argument("--m", type=positive_int, default=5, help="rows of W (default 5)")
    group.add_argument("--m2", type=positive_int, default=None, help="columns of W (default: m)")
    group.add_argument("--rank", type=positive_int, default=1, help="rank of W* (default 1)")
    group.add_argument("--n", type=positive_int, default=15, help="measurements (default 15)")
    group.add_argument("--measurements", choices=MEASUREMENT_KINDS, default="gaussian")
    group.add_argument("--width", type=positive_int, default=5, help="hidden width k (default 5)")
    group.add_argument("--depth", type=positive_int, default=2, help="layers d (default 2)")
    group.add_argument("--activation", choices=ACTIVATIONS, default="linear")
    group.add_argument("--seed", type=seed, default=0, help="problem seed (default 0)")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    group.add_argument("--dtype", choices=("float32", "float64"), default=None)
    group.add_argument("--json", action="store_true", help="print one JSON object")


def problem_and_model(args, default_dtype: str, psd: bool = False):
    from factorkit._validation import resolve_device
    from factorkit.models.deep import DeepFactorization
    from factorkit.problems.sensing import make_sensing_problem

    problem = make_sensing_problem(
        args.m,
        args.m2,
        args.rank,
        args.n,
        args.measurements,
        args.seed,
        device=args.device,
        # float32 by default on a GPU (--dtype float64 still available); per command on the CPU
        dtype=args.dtype or ("float32" if resolve_device(args.device).type == "cuda" else default_dtype),
        psd=psd,
    )
    m2 = args.m if args.m2 is None else args.m2
    return problem, DeepFactorization(args.m, m2, args.width, args.depth, args.activation)


def strict(value):
    """``value`` with every non-finite float replaced by None: strict JSON (no bare NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


def write_report(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(strict(report), indent=2, allow_nan=False))


def prepare_out(out: Path) -> None:
    """Create the output folder and check it is writable *before* any computing."""
    from factorkit._files import prepare_folder

    prepare_folder(out)


def diverged(method: str, why: str = "non-finite result") -> RuntimeError:
    """The CLI's one error (exit status 1) for a fit that left float64's range."""
    return RuntimeError(
        f"the {method} fit diverged ({why}); check the data's scale (rescale it) or lower the rank"
    )


def check_finite(method: str, *results) -> None:
    import numpy as np

    for result in results:
        if not np.isfinite(np.asarray(result, dtype=np.float64)).all():
            raise diverged(method)


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(strict(result), allow_nan=False))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


def save_fit(out: Path, arrays: dict, report: dict, as_json: bool) -> None:
    """The tail of every ``fit``: the arrays as ``.npy``, ``report.json``, the report printed."""
    import numpy as np

    for name, array in arrays.items():
        np.save(out / f"{name}.npy", array)
    write_report(out, report)
    print_result(report, as_json)
