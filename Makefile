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

# img2dataset (the URL-list downloader of `dataigm ingest --urls`) pins webdataset<0.3 and pandas<3, so it gets an
# environment of its own inside .venv, which dataigm finds by itself (docs/ingest.md, "Web and Hub sources"); its
# dependencies are pinned in constraints-img2dataset.txt, and editing that file re-installs them.
IMG2DATASET_STAMP := $(VENV)/img2dataset/.installed
$(IMG2DATASET_STAMP): $(STAMP) constraints-img2dataset.txt
	test -x $(VENV)/img2dataset/bin/python || $(BIN)/python -m venv $(VENV)/img2dataset
	$(VENV)/img2dataset/bin/python -m pip install --quiet -c constraints-img2dataset.txt --upgrade pip
	$(VENV)/img2dataset/bin/python -m pip install --quiet -c constraints-img2dataset.txt "img2dataset==1.47.0"
	touch $(IMG2DATASET_STAMP)

install: $(STAMP) $(IMG2DATASET_STAMP)

# The whole product on the built-in toy world: dataset, judge, evaluation of three toy unlearned models, cards.
demo: $(STAMP)
	$(BIN)/dataigm demo --out $(OUT)

# Every test, the slow ones included (what CI runs).
test: $(STAMP) $(IMG2DATASET_STAMP)
	$(BIN)/python -m pytest -q

# The tests not marked slow (no demo, kill/resume, Ray or evaluation-flow runs): for the edit-test loop.
test-fast: $(STAMP) $(IMG2DATASET_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

quality: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(OUT) .pytest_cache
