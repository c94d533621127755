# Two commands do everything on a fresh machine:
#   make book   install, execute every chapter (PROFILE=quick by default), compile the book
#   make test   install, run the tests
# Both work in a project virtual environment, .venv, created on first use with
# `python3 -m venv` (Debian's own python3 refuses pip installs, PEP 668). To use another
# environment (conda, Colab, an existing venv), point PYTHON at its interpreter:
#   make test PYTHON=python
PROFILE ?= quick
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
FONT_LIST := src/advmanifold/debian-font-packages.txt
BOOK_ARGS ?=

.PHONY: install fonts book test pairs lint benchmarks plan

# the project's virtual environment (only when PYTHON was not pointed elsewhere)
$(VENV)/bin/python:
	@python3 -c "import venv, ensurepip" 2>/dev/null || { \
	  echo "error: python3 cannot create virtual environments (its venv module is missing)."; \
	  echo "  On Debian/Ubuntu: sudo apt-get install python3-venv"; \
	  echo "  Or use another environment: make $(MAKECMDGOALS) PYTHON=/path/to/python"; \
	  exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip

install: $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(VENV)/bin/python)
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps "torchattacks>=3.5"
	$(PYTHON) -m pip install -q --no-deps -e .

# The fonts FONTS is rendered from: the Debian font packages (the fallback), then the
# original's Google Fonts faces, pinned as npm packages in
# src/advmanifold/google-fonts.tsv (npm itself comes from apt-get when missing).
# apt-get runs only without a prompt (as root, or with password-less sudo); otherwise
# the exact command is printed and make goes on.
fonts: install
	@pkgs="$$(grep -v '^\s*#' $(FONT_LIST) | xargs)"; \
	if ! command -v apt-get >/dev/null; then \
	  echo "note: no apt-get here; FONTS uses the fonts it finds (see README, Fonts)"; \
	elif dpkg-query -W -f='$${Status}\n' $$pkgs 2>/dev/null | grep -vq "ok installed" \
	     || [ "$$(dpkg-query -W $$pkgs 2>/dev/null | wc -l)" -lt "$$(echo $$pkgs | wc -w)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else \
	    echo "note: FONTS needs Debian font packages; install them with:"; \
	    echo "  sudo apt-get install --no-install-recommends $$pkgs"; \
	    echo "(going on: FONTS will warn that it runs on fallback fonts)"; exit 0; fi; \
	  echo "installing $$(echo $$pkgs | wc -w) Debian font packages for FONTS"; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends \
	    $$pkgs >/dev/null && \
	  echo "installed the Debian font packages (the fallback fonts)"; \
	else \
	  echo "Debian fallback fonts: the $$(echo $$pkgs | wc -w) packages are installed"; \
	fi
	@if ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else sudo=none; fi; \
	  if command -v apt-get >/dev/null && [ "$$sudo" != none ]; then \
	    echo "installing npm (apt-get) to fetch the Google fonts for FONTS"; \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	      --no-install-recommends npm >/dev/null; \
	  fi; \
	fi; \
	if command -v npm >/dev/null; then \
	  $(PYTHON) -m advmanifold.science.google_fonts fetch || \
	  echo "note: Google fonts not fetched; FONTS falls back to the Debian fonts"; \
	else \
	  echo "note: npm fetches the original's Google fonts for FONTS; run:"; \
	  echo "  sudo apt-get install npm && make fonts"; \
	  echo "(going on: FONTS falls back to the Debian fonts)"; \
	fi

book: install fonts
	$(PYTHON) -m advmanifold.book --profile $(PROFILE) $(BOOK_ARGS)

# what the paper profile (or any profile) would build, and what it costs here
plan: install
	$(PYTHON) -m advmanifold.book --profile $(PROFILE) --plan

# pytest exits 5 when it collects no test: report that instead of failing obscurely
test: install
	$(PYTHON) -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$status

# the paired notebooks are in sync when regenerating the .ipynb changes nothing
pairs: install
	$(PYTHON) -m jupytext --to ipynb --update notebooks/*.py
	git diff --exit-code -- notebooks/

# ruff with the rules of pyproject.toml ([tool.ruff]) on the whole tree. `ruff format`
# is not enforced: the code base is not ruff-format clean (see CONTRIBUTING.md, Lint).
lint: install
	$(PYTHON) -m ruff check

benchmarks: install
	$(PYTHON) benchmarks/run.py
