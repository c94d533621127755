#!/usr/bin/env python3
"""Benchmarks of the advmanifold package against the references it replaces.

    python3 benchmarks/run.py                    # everything, at full size, every core
    python3 benchmarks/run.py --threads 1        # fix the thread count
    python3 benchmarks/run.py --only pgd steps   # some pieces (see --help)
    python3 benchmarks/run.py --only convnet denormals   # the ConvNet workload,
    denormals

It writes _build/results/benchmarks.json. The benchmark functions live in
:mod:`advmanifold.chapters.benchmarks`; the book's appendix notebook
``notebooks/90_benchmarks.py`` calls the same functions with smaller sizes.
"""

from __future__ import annotations

import argparse
import sys

from advmanifold.chapters import benchmarks as benchmarking
from advmanifold.science import compute


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch (and BLAS) threads (default: every core available, "
        f"here {compute.cores()})",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=benchmarking.PIECES,
        default=list(benchmarking.PIECES),
        help="pieces to run (default: all)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds per piece (default: per piece, 3-5)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="JSON path (default: _build/results/benchmarks.json)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding MNIST/raw (default: ADVMANIFOLD_DATA)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    settings = {}
    if args.repeats is not None:
        settings = {
            f"{p}_repeats": args.repeats for p in ("pgd", "knn", "decoder", "step")
        }
    run = benchmarking.run_benchmarks(
        settings,
        threads=args.threads,
        pieces=tuple(args.only),
        data_dir=args.data_dir,
        seed=args.seed,
        log=lambda text: print(text, flush=True),
    )
    path = benchmarking.write_json(run, args.output, pieces=tuple(args.only))
    m = run["metrics"]
    print(f"\n{m['cpu_model']}, {m['threads']} thread(s), torch {m['torch_version']}")
    for note in run["notes"]:
        print(f"note: {note}")
    for row in benchmarking.targets(m):
        name = row["metric"]
        spread = (
            f" (min {m[name + '_min']:.3g}, max {m[name + '_max']:.3g})"
            if name + "_min" in m
            else ""
        )
        print(
            f"{'met   ' if row['met'] else 'MISSED'} {name} = {row['value']:.3g}"
            f"{spread}, target {row['target']}"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
