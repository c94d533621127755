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
# what the chapters measured, and a verdict computed from the chapters' results files
# (`_build/results/<chapter>.json`) by the rules in `advmanifold.claims`. Nothing on this
# page is typed by hand: re-running a chapter with other settings changes the table.
#
# The rules are this book's choices. A claim about a difference counts as *reproduced*
# when the difference exceeds twice its standard error over training seeds (where a
# chapter trained several seeds) and any stated margin, as *partly* when it only has the
# claimed sign, and as *not reproduced* otherwise. Claims that something is "near zero"
# are judged relative to the regular adversarial examples' distance.

# %% tags=["remove-cell"]
import sys, subprocess
if "google.colab" in sys.modules:  # on Colab: install the companion package
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+https://github.com/adversarial-manifolds/companion.git"], check=True)

# %% tags=["parameters"]
profile = "quick"
seed = 0
device = "cpu"
results_dir = None

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from advmanifold import claims, paths
from advmanifold.results import Results

res = Results("05_claims", profile=profile, seed=seed)
folder = Path(results_dir) if results_dir else paths.results_dir()
chapters = sorted({c.chapter for c in claims.CLAIMS})
found = {stem: json.loads((folder / f"{stem}.json").read_text())
         for stem in chapters if (folder / f"{stem}.json").is_file()}
profiles_used = {stem: record["profile"] for stem, record in found.items()}
ledger = claims.ledger(found)
res.add_table("ledger", ledger)
print("profile of each chapter read:", profiles_used or "none")

# %% [markdown]
# ## The ledger

# %% tags=["remove-input"]
icons = {claims.REPRODUCED: "**reproduced**", claims.PARTLY: "*partly*",
         claims.NOT_REPRODUCED: "**not reproduced**", claims.NOT_RUN: "not run"}
lines = ["| claim | source | paper | measured | verdict | rule | evidence |",
         "|---|---|---|---|---|---|---|"]
for row in ledger.itertuples():
    lines.append(f"| {row.claim} | {{cite:t}}`{row.source}` | {row.paper} | {row.measured} | "
                 f"{icons[row.verdict]} | {row.rule} | {{numref}}`{row.figure}` |")
display(Markdown("\n".join(lines)))

# %%
counts = ledger["verdict"].value_counts()
for verdict in (claims.REPRODUCED, claims.PARTLY, claims.NOT_REPRODUCED, claims.NOT_RUN):
    res.add(f"claims_{verdict.replace(' ', '_')}", int(counts.get(verdict, 0)))
res.add("claims_total", len(ledger))
score = {claims.REPRODUCED: 1.0, claims.PARTLY: 0.5, claims.NOT_REPRODUCED: 0.0, claims.NOT_RUN: -1.0}
for row in ledger.itertuples():  # one number per claim, so the verdicts live in the results file too
    res.add(f"verdict_{row.key.replace('-', '_')}", score[row.verdict], glue=False)

order = [claims.REPRODUCED, claims.PARTLY, claims.NOT_REPRODUCED, claims.NOT_RUN]
frame = ledger.assign(paper=ledger["source"].map({claims.STUTZ: "Stutz et al. 2019",
                                                  claims.GEYER: "Geyer et al. 2023"}))
fig, ax = plt.subplots(figsize=(6.5, 2.6))
sns.countplot(data=frame, y="paper", hue="verdict", hue_order=order, ax=ax,
              palette=["#2ca02c", "#ffbf00", "#d62728", "#b0b0b0"])
ax.set(xlabel="number of claims", ylabel="")
ax.legend(title="verdict", bbox_to_anchor=(1.02, 1), loc="upper left", frameon=False)
sns.despine(fig)
fig.tight_layout()
fig.savefig(paths.figures_dir() / "05_claims_verdicts.png", dpi=150)
glue("fig_claims_verdicts", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_claims_verdicts
# :name: fig-claims-verdicts
# Verdicts per paper. Of {glue:text}`claims_total:d` claims, {glue:text}`claims_reproduced:d`
# reproduced, {glue:text}`claims_partly:d` partly, {glue:text}`claims_not_reproduced:d` did
# not, and {glue:text}`claims_not_run:d` were not run in this build.
# ```
#
# The verdicts depend on the profile the chapters ran with: the `quick` profile trains on
# subsets for a few epochs, so a claim that is *partly* reproduced there may be settled by
# the `paper` profile. Each chapter's results file records the profile it used.

# %%
res.write();
