"""``factorkit embed``: closed-form word embeddings (QWEM) from a text corpus."""

from __future__ import annotations

from pathlib import Path

from factorkit.cli.common import positive_float, positive_int, prepare_out, print_result, seed, write_report


def add_parser(commands) -> None:
    embed = commands.add_parser("embed", help="closed-form word embeddings (QWEM) from a text corpus")
    embed.add_argument("corpus", type=Path, help="UTF-8 text, one sentence per line")
    embed.add_argument("--dim", type=positive_int, default=100)
    embed.add_argument("--window", type=positive_int, default=5)
    embed.add_argument("--min-count", type=positive_int, default=5)
    embed.add_argument("--max-vocab", type=positive_int, default=None)
    embed.add_argument("--negatives", type=positive_float, default=5.0, help="psi, negative-sampling ratio")
    embed.add_argument(
        "--power",
        type=positive_float,
        default=1.0,
        help="unigram exponent of the negatives (word2vec: 0.75)",
    )
    embed.add_argument(
        "--weighting",
        choices=("linear", "uniform"),
        default="linear",
        help="window weights by distance r: (window - r + 1) / window (word2vec's dynamic window) or 1",
    )
    embed.add_argument("--tol", type=positive_float, default=1e-6, help="eigensolver relative residual")
    embed.add_argument("--seed", type=seed, default=0, help="eigensolver start block (random_state)")
    embed.add_argument(
        "--solver",
        choices=("auto", "dense", "lanczos", "arpack"),
        default="auto",
        help="eigensolver (auto: dense below 700 words, float32 block Lanczos above)",
    )
    embed.add_argument("--out", type=Path, required=True, help="folder for vectors.txt and report.json")
    embed.add_argument(
        "--json", action="store_true", help="print the report (report.json) as one JSON object"
    )
    embed.add_argument("--analogies", type=Path, default=None, help="questions-words file to evaluate on")
    embed.add_argument(
        "--similarity", type=Path, action="append", default=[], help="word-pair file (repeatable)"
    )


def run(args) -> None:
    from factorkit.methods.embeddings import QWEM, embed_report

    for path in [args.analogies, *args.similarity]:
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"evaluation file {str(path)!r} does not exist")
    prepare_out(args.out)
    model = QWEM(
        args.dim,
        window=args.window,
        min_count=args.min_count,
        max_vocab=args.max_vocab,
        negatives=args.negatives,
        power=args.power,
        weighting=args.weighting,
        solver=args.solver,
        tol=args.tol,
        random_state=args.seed,
    )
    model.fit(args.corpus, progress=None)
    model.save_word2vec(args.out / "vectors.txt")
    report = embed_report(model, args.analogies, args.similarity)
    write_report(args.out, report)
    if args.json:  # what report.json holds
        print_result(report, as_json=True)
        return
    summary = {k: v for k, v in report.items() if not isinstance(v, dict)}
    if "analogies" in report:
        summary["analogy_accuracy"] = report["analogies"]["accuracy"]
    print_result(summary, as_json=False)
