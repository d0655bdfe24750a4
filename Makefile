# The README's commands. `make demo` and `make test` set up what they need first (idempotent).
PYTHON ?= python3
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test lint bench lint-rules dashboards pictures clean

setup:
	bash deploy/setup.sh

demo: setup
	$(PYTHON) -m pulse.cli demo

# Lint first: a style or import error fails in seconds, before the ten-minute suite. `make test` runs every test;
# by cost: `pytest -m unit` (no services), `-m integration` (the test broker), `-m slow` (builds, installs).
test: setup lint
	$(PYTHON) -m pytest -q -p no:cacheprovider

lint:
	$(PYTHON) -m ruff check .

# The Prometheus rules, checked and unit-tested by promtool (installed by `make setup`, deploy/setup.sh).
lint-rules:
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.yml

bench: setup
	$(PYTHON) -m pulse.cli bench

dashboards:
	$(PYTHON) -m pulse.cli dashboards build

# docs/pictures/report.png and watch.png, from a month it simulates itself (about a minute).
pictures: setup
	$(PYTHON) -m pulse.report.pictures docs/pictures

clean:
	$(PYTHON) -m pulse.cli infra down --purge
