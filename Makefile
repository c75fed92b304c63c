# idnode — the two set-up commands: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DATA   ?= ./var/idnode
STAMP  := $(VENV)/.installed

.PHONY: serve test build bench clean

$(STAMP): pyproject.toml setup.py native/_hotpath.pyx
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel "Cython>=3"
	$(PIP) install --quiet -e ".[test]"
	touch $(STAMP)

# In-place build of the Cython twin (the editable install builds it too; this refreshes it).
build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

serve: build
	$(VENV)/bin/idnode load --data $(DATA) registry/demo.jsonl
	$(VENV)/bin/idnode serve --data $(DATA) --http-port 8000

test: build
	$(PY) -m pytest -q
	IDNODE_NO_EXTENSIONS=1 $(PY) -m pytest -q

bench: build
	$(PY) -m bench http

clean:
	rm -rf build dist *.egg-info native/*.so native/_hotpath.c native/_hotpath.html
