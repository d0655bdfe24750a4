# The README's commands. `make demo` and `make test` set up what they need first (idempotent).
PYTHON ?= python3
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test bench lint-rules dashboards pictures clean

setup:
	bash deploy/setup.sh

demo: setup
	$(PYTHON) -m pulse.cli demo

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider

bench: setup
	$(PYTHON) -m pulse.cli bench

dashboards:
	$(PYTHON) -m pulse.cli dashboards build

# docs/pictures/report.png and watch.png, from a month it simulates itself (about a minute).
pictures: setup
	$(PYTHON) -m pulse.report.pictures docs/pictures

clean:
	$(PYTHON) -m pulse.cli infra down --purge
