"""Regenerate the README's profile table from the runner's plan.

    .venv/bin/python tools/profile_table.py           # print the table
    .venv/bin/python tools/profile_table.py --write   # and replace it in README.md

For each profile, every unit of every chapter, cached or not, is priced by the units'
cost models, corrected by the build times this machine's cache records
(:func:`advmanifold.book.units.estimate`); the paper profile's generalization grid
counts only the models the committed record lacks. The table gives the work on one
worker, the longest chain of dependent units and the lower bound on 2 workers, with
the date and the machine. The README keeps the table
between the markers ``<!-- profile-table -->`` and ``<!-- /profile-table -->``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- profile-table -->", "<!-- /profile-table -->"
PURPOSE = {
    "smoke": "every code path, tiny sizes; tests and CI",
    "quick": "the default build; shows each effect honestly on a laptop CPU",
    "paper": "the papers' data sizes, iterations and restarts (our epochs and seeds "
    "where the papers give none)",
}


def plan_profile(profile: str, workers: int = 2) -> dict:
    """Units, work, longest chain and bound of ``profile`` as if nothing were
    cached."""
    from advmanifold.book import fanout, runner, units
    from advmanifold.chapters import registry

    found = registry()
    the_plan = runner.plan(ROOT, profile, None, [], found.check)
    planned = fanout.plan_units(the_plan.parameters, profile, found)
    seconds = {p.unit.key: p.estimate_s for p in planned}
    level = fanout.critical_path([p.unit for p in planned], lambda u: seconds[u.key])
    work, chain = sum(seconds.values()), max(level.values(), default=0.0)
    return {
        "profile": profile,
        "units": len(planned),
        "work": units.format_seconds(work),
        "chain": units.format_seconds(chain),
        "bound": units.format_seconds(max(chain, work / workers)),
    }


def table(rows: list[dict], machine: str) -> str:
    lines = [
        "| profile | what it is for | units | work, one worker | longest chain "
        "| 2 workers, at least |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['profile']}` | {PURPOSE[r['profile']]} | {r['units']} "
            f"| about {r['work']} | {r['chain']} | {r['bound']} |"
        )
    lines.append("")
    lines.append(
        f"Planned on {time.strftime('%Y-%m-%d')} on {machine} "
        "(`tools/profile_table.py`): the units' cost models, corrected by this "
        "machine's recorded build times. The chapters' own work and installing come "
        "on top; the chapters run beside the fan-out."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace it in README")
    args = parser.parse_args(argv)
    from advmanifold.science.compute import cores, cpu_model

    rows = [plan_profile(p) for p in ("smoke", "quick", "paper")]
    text = table(rows, f"{cores()}-core {cpu_model()}")
    print(text)
    if args.write:
        readme = ROOT / "README.md"
        old = readme.read_text()
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
        if not pattern.search(old):
            sys.exit(f"README.md has no {BEGIN} ... {END} block")
        readme.write_text(pattern.sub(f"{BEGIN}\n{text}\n{END}", old))
    return 0


if __name__ == "__main__":
    sys.exit(main())
