"""The book's figure conventions, shared by every chapter module.

One seaborn theme (:func:`style`); each figure is glued for the page under a name the
chapter's markdown cites (``{glue:figure}``), written as
``<figures>/<stem>_<name>.png`` (150 dpi) for the README and the intro, and closed.
Outside the book (a plain script, Colab without myst-nb) only the PNG is written.
"""

from __future__ import annotations

from . import paths


def style() -> None:
    """The book's seaborn theme: white grid, notebook context."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")


def save(fig, stem: str, name: str) -> None:
    """The one way a chapter saves a figure: glue ``fig`` as ``fig_<name>`` (cited by
    ``{glue:figure} fig_<name>`` in the chapter), write
    ``<figures>/<stem>_<name>.png`` and close it."""
    import matplotlib.pyplot as plt

    try:
        from myst_nb import glue
    except ImportError:  # outside the book
        glue = None
    if glue is not None:
        glue(f"fig_{name}", fig, display=False)
    fig.savefig(
        paths.figures_dir() / f"{stem}_{name}.png", dpi=150, bbox_inches="tight"
    )
    plt.close(fig)
