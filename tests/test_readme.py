"""The README's numbers stay true: the record coverage it quotes is the record's."""

import re
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "results" / "paper" / "06_generalization__models.csv"


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_readme_quotes_the_generalization_records_coverage():
    readme = (ROOT / "README.md").read_text()
    text = " ".join(readme.split())
    found = re.search(
        r"generalization record holds ([\d,]+) models: ([\d,]+) on the Debian fonts"
        r".*? and ([\d,]+) on the original's Google Fonts",
        text,
    )
    assert found, "README.md no longer quotes the generalization record's coverage"
    total, debian, google = (_number(g) for g in found.groups())
    record = pd.read_csv(RECORD)
    fonts = record["fonts"] if "fonts" in record else pd.Series("system", record.index)
    fonts = fonts.fillna("system")
    assert total == len(record)
    assert debian == int((fonts == "system").sum())
    assert google == int((fonts == "google").sum())
