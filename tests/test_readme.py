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


def _markdown_table_after(text: str, heading: str) -> pd.DataFrame:
    """The first pipe table below ``heading`` as strings (header row as columns)."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    header, body = rows[0], [r for r in rows[1:] if not set(r[0]) <= {"-"}]
    return pd.DataFrame(body, columns=header)


def test_record_readme_quotes_the_google_fonts_coverage():
    text = (ROOT / "results" / "paper" / "README.md").read_text()
    table = _markdown_table_after(text, "## Generalization on the original's Google")
    coverage = pd.read_csv(RECORD.with_name("06_generalization__coverage.csv"))
    assert list(table["method"]) == list(coverage["method"])
    for column in coverage.columns[1:]:
        assert table[column].astype(int).tolist() == coverage[column].tolist(), column
    found = re.search(r"\n(\d+) models \((\d+) of the 60 of the five", text)
    assert found, "results/paper/README.md no longer counts the Google-Fonts models"
    fonts = pd.read_csv(RECORD)["fonts"].fillna("system")
    assert int(found.group(1)) == int((fonts == "google").sum())
    five = coverage[~coverage["method"].str.startswith("Aligned")]
    acceptance = ["N = 500", "N = 2,500", "N = 10,000", "N = 20,000"]  # issue 25's N
    five = five[acceptance].clip(upper=3)
    assert int(found.group(2)) == int(five.to_numpy().sum())
