"""The programs that run in fresh processes, one per measurement that a running
process cannot make (a cold compile, an OpenMP wait policy read when torch loads,
denormal flags on a new thread team, processes beside each other):

    python -m advmanifold.chapters.benchmarks.fresh PROGRAM '{"keyword": value}'

calls ``PROGRAMS[PROGRAM](**keywords)`` and prints its result as JSON on the last
line (:func:`~.harness.run_fresh` and :func:`~.harness.start_fresh` start them).
Measurements that need the same kind of fresh process share one where they can:
``unit`` may measure one process's attack rate before its unit, ``denormals`` runs
its settings one after the other. No module of the package imports this one, so
``-m`` runs it exactly once.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

from .denormals import adam_run
from .levers import attack_rate, compile_run
from .unit import unit_run

#: program name → the function it runs
PROGRAMS: dict[str, Callable[..., Any]] = {
    "compile": compile_run,
    "attack_rate": attack_rate,
    "unit": unit_run,
    "denormals": adam_run,
}


def main(argv: list[str] | None = None) -> int:
    """Run the program named by the first argument with the keywords of the second
    (a JSON object); print its result as one line of JSON."""
    program, keywords = sys.argv[1:] if argv is None else argv
    if program not in PROGRAMS:
        raise SystemExit(f"unknown program {program!r}; known: {sorted(PROGRAMS)}")
    print(json.dumps(PROGRAMS[program](**json.loads(keywords))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
