"""The book's table of contents: its notebook chapters, read from ``_toc.yml``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class BookError(SystemExit):
    """A user-facing failure: printed without a traceback, exit status 2 (usage) or 1
    (run)."""

    def __init__(self, message: str, status: int = 2):
        print(f"error: {message}", file=sys.stderr)
        super().__init__(status)


KERNELSPEC = {
    "name": "python3",
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
}


@dataclass
class Chapter:
    stem: str
    source: Path  # notebooks/<stem>.py

    def notebook(self):
        import jupytext

        notebook = jupytext.read(self.source)
        notebook.metadata.setdefault("kernelspec", KERNELSPEC)
        return notebook

    def parameters(self) -> dict[str, Any]:
        """Names and defaults of the ``parameters`` cell."""
        from papermill.inspection import inspect_notebook
        import jupytext
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{self.stem}.ipynb"
            jupytext.write(self.notebook(), path)
            return {
                name: info["default"]
                for name, info in inspect_notebook(str(path)).items()
            }


def toc_files(toc_path: Path) -> list[str]:
    """Every document of a Jupyter Book ``_toc.yml``, in reading order (parsed by
    ``sphinx_external_toc``, which Jupyter Book itself uses)."""
    from sphinx_external_toc.parsing import parse_toc_yaml

    site = parse_toc_yaml(str(toc_path))

    def walk(doc: str) -> list[str]:
        found = [doc]
        for subtree in site[doc].subtrees:
            for item in subtree.items:
                if isinstance(item, str):  # a document (globs and URLs are not)
                    found.extend(walk(item))
        return found

    return walk(site.root.docname)


def chapters(root: Path) -> list[Chapter]:
    """Notebook chapters of ``_toc.yml`` (entries with a ``notebooks/<stem>.py``
    source)."""
    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise BookError(
            f"no _toc.yml in {root}: run from the book's folder or pass --root"
        )
    found = []
    for entry in toc_files(toc_path):
        source = (root / entry).with_suffix(".py")
        if source.parent.name == "notebooks" and source.is_file():
            found.append(Chapter(source.stem, source))
    return found
