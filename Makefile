# Two commands do everything on a fresh machine:
#   make book   install, execute every chapter (PROFILE=quick by default), compile the book
#   make test   install, run the tests
PYTHON ?= python3
PROFILE ?= quick

.PHONY: install book test pairs benchmarks

install:
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps "torchattacks>=3.5"
	$(PYTHON) -m pip install -q --no-deps -e .

book: install
	$(PYTHON) -m advmanifold.book --profile $(PROFILE)

# pytest exits 5 when it collects no test: report that instead of failing obscurely
test: install
	$(PYTHON) -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$status

# the paired notebooks are in sync when regenerating the .ipynb changes nothing
pairs:
	jupytext --to ipynb --update notebooks/*.py
	git diff --exit-code -- notebooks/

benchmarks: install
	$(PYTHON) benchmarks/run.py
