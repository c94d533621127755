# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The claims ledger
#
# Every claim of the two papers that this book tests, in one table: what the paper says,
# what the chapters measured, and a verdict computed from the chapters' results files by
# the rules in `advmanifold.book.ledger`. Nothing on this page is typed by hand:
# re-running a chapter with other settings changes the table.
#
# Each claim is judged twice, side by side: on the results of *this build*
# (`_build/results/<chapter>.json`, whatever profile the chapters ran with) and on the
# *paper-scale record* committed with the book (`results/paper/<chapter>.json`, the
# chapters run once with the `paper` profile). A claim whose chapter is missing from
# either is *not run* there.
#
# The rules are this book's choices. A claim about a difference counts as *reproduced*
# when the difference exceeds twice its standard error over training seeds (where a
# chapter trained several seeds) and any stated margin, as *partly* when it only has the
# claimed sign, and as *not reproduced* otherwise. Claims that something is "near zero"
# are judged relative to the regular adversarial examples' distance. A chapter that ran
# on a fallback (FONTS on fewer legible fonts than its profile asks for) measured
# something else than the paper: its claims are *not comparable*, with the reason (the
# FONTS chapter says how to install the fonts).

# %% tags=["remove-cell"]
import sys, subprocess
if "google.colab" in sys.modules:  # on Colab: install the companion package
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+https://github.com/adversarial-manifolds/companion.git"],
                   check=True)

# %% tags=["parameters"]
profile = "quick"
seed = 0
device = "cpu"
results_dir = None  # this build's results (None: _build/results)
record_dir = None   # the paper-scale record (None: results/paper at the book's root)

# %% tags=["hide-input"]
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from advmanifold.book import ledger, paths
from advmanifold.book.results import Results
from advmanifold.chapters import claims

res = Results("05_claims", profile=profile, seed=seed)
stems = claims.chapters()
found = ledger.read_results_folder(Path(results_dir or paths.results_dir()), stems)
record_folder = Path(record_dir) if record_dir else ledger.record_dir()
record = ledger.read_results_folder(record_folder, stems)
table = ledger.ledger(found, record, claims=claims.CLAIMS)
res.add_table("ledger", table)
in_book = ledger.built_chapters()  # the chapters compiled into this book
linked = set(found) & in_book  # those whose figures exist in this build

# %% [markdown]
# ## What was read
#
# The profile each chapter ran with, in this build and in the paper-scale record (with
# the date and machine of the record where it says so):

# %% tags=["remove-input"]
build = ledger.describe_records(found).set_index("chapter")
paper = ledger.describe_records(record).set_index("chapter")
sources = pd.DataFrame({
    "this build": [build["profile"].get(s, "not run") if len(build) else "not run"
                   for s in stems],
    "paper-scale record": [
        ", ".join(str(x) for x in paper.loc[s].dropna().drop("wall_time_s",
                                                              errors="ignore"))
        if s in paper.index else "not run" for s in stems]}, index=stems)
display(sources.rename_axis("chapter"))

# %% [markdown]
# ## The ledger
#
# Each verdict cell gives the verdict, the value measured, the rule that judged it and,
# for *not run* and *not comparable*, the reason. The last part of a claim's cell links
# the figure that shows the evidence (or, where its chapter did not run in this build,
# the chapter).

# %% tags=["remove-input"]
display(Markdown(ledger.ledger_markdown(table, linked, in_book)))

# %% tags=["hide-input"]
order = list(ledger.VERDICTS)
colours = ["#2ca02c", "#ffbf00", "#d62728", "#9467bd", "#b0b0b0"]
names = claims.SOURCES
for prefix, column in (("claims", "verdict"), ("record_claims", "record_verdict")):
    counts = table[column].value_counts()
    for verdict in order:
        res.add(f"{prefix}_{verdict.replace(' ', '_')}", int(counts.get(verdict, 0)))
res.add("claims_total", len(table))
disagree = ledger.differing(table)
res.add("claims_differing", len(disagree))
for row in table.itertuples():  # one number per claim: verdicts in the results file
    key = row.key.replace("-", "_")
    res.add(f"verdict_{key}", ledger.VERDICT_SCORE[row.verdict], glue=False)
    res.add(f"record_verdict_{key}", ledger.VERDICT_SCORE[row.record_verdict],
            glue=False)

long = pd.concat([
    pd.DataFrame({"paper": table["source"].map(lambda s: names.get(s, s)),
                  "scale": scale, "verdict": table[column]})
    for scale, column in (("this build", "verdict"),
                          ("paper scale", "record_verdict"))])
counts = (pd.crosstab([long["paper"], long["scale"]], long["verdict"])
          .reindex(columns=order, fill_value=0))
counts.index = [f"{p}, {s}" for p, s in counts.index]
fig, ax = plt.subplots(figsize=(8, 0.55 * len(counts) + 1.4))
counts.plot.barh(stacked=True, color=colours, ax=ax, width=0.7)
ax.invert_yaxis()
ax.set(xlabel="number of claims", ylabel="")
ax.tick_params(labelsize=11)
ax.xaxis.label.set_size(11)
ax.legend(title="verdict", ncols=3, fontsize=10, title_fontsize=10,
          bbox_to_anchor=(0.5, -0.32), loc="upper center", frameon=False)
sns.despine(fig)
fig.tight_layout()
fig.savefig(paths.figures_dir() / "05_claims_verdicts.png", dpi=150)
glue("fig_claims_verdicts", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_claims_verdicts
# :name: fig-claims-verdicts
# Verdicts per paper, in this build and in the paper-scale record. Of
# {glue:text}`claims_total:d` claims, this build reproduced
# {glue:text}`claims_reproduced:d`, partly {glue:text}`claims_partly:d`, did not
# reproduce {glue:text}`claims_not_reproduced:d`, and did not run
# {glue:text}`claims_not_run:d`; the paper-scale record reproduced
# {glue:text}`record_claims_reproduced:d` and partly
# {glue:text}`record_claims_partly:d`, did not reproduce
# {glue:text}`record_claims_not_reproduced:d`, holds
# {glue:text}`record_claims_not_comparable:d` not comparable, and lacks
# {glue:text}`record_claims_not_run:d`.
# ```
#
# ## Where the scales disagree
#
# Among the claims judged at both scales (neither *not run* nor *not comparable* in
# either), the verdict of this build differs from that of the paper-scale record for
# {glue:text}`claims_differing:d` of them:

# %% tags=["remove-input"]
if len(disagree):
    display(Markdown("\n".join(
        f"- {ledger.escape(row.claim)}: {ledger.VERDICT_MARKUP[row.verdict]} in this "
        f"build, {ledger.VERDICT_MARKUP[row.record_verdict]} at paper scale."
        for row in disagree.itertuples())))
else:
    display(Markdown("*None.*"))

# %% [markdown]
# The verdicts of this build depend on the profile its chapters ran with: the `quick`
# profile trains on subsets for a few epochs, so a claim only *partly* reproduced there
# may be settled at paper scale, and the other way round.

# %% tags=["hide-input"]
# the intro's results at a glance: a Markdown include, staged into book/generated/
ran = ", ".join(sorted({r["profile"] for r in found.values()})) or "none"
glance = (f"Judged on this build (profile {ran}) and on the paper-scale record "
          f"({len(record)} of {len(stems)} chapters); details in "
          "{doc}`/notebooks/05_claims`.\n\n"
          + ledger.glance_markdown(table, linked, in_book))
(paths.figures_dir() / "05_claims_glance.md").write_text(glance + "\n")
res.write();
