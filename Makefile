# The two commands: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS ?= dev,transcribe

.PHONY: install test demo lint clean bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps -e examples/rtc-brightness  # the example pipeline plugin
	touch $(STAMP)

test: install
	scripts/run-tests.sh $(PYTEST_ARGS)

demo: install
	scripts/ensure-system-deps.sh
	YOLO_OFFLINE=1 HF_HUB_OFFLINE=1 $(VENV)/bin/rtc-annotator demo

lint: install
	$(PY) -m ruff check rtc_annotator signaling tests scripts
	$(PY) -m mypy

bench: install
	for b in scripts/bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
