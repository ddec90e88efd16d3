# Two entry points on a fresh machine: `make demo` (the main job on the built-in default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= demo-out

.PHONY: install demo test quality style clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q

quality: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(OUT) .pytest_cache
