# Two entry points on a fresh machine: `make demo` (the main job on the built-in default) and `make test`
# (`make test-fast` leaves out the tests marked slow).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= demo-out

.PHONY: install demo test test-fast quality style clean

# The virtual environment, created when missing; constraints.txt pins torch/torchvision to the cached wheels.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,distributed,baselines]"
	touch $(STAMP)

install: $(STAMP)

# The whole product on the built-in toy world: dataset, judge, evaluation of three toy unlearned models, cards.
demo: $(STAMP)
	$(BIN)/dataigm demo --out $(OUT)

# Every test, the slow ones included (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -q

# The tests not marked slow (no demo, kill/resume, Ray or evaluation-flow runs): for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

quality: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(OUT) .pytest_cache
