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

# Data-layer quickstart: build prompts, draw stand-in images, ingest them, validate, count, load with `datasets`.
demo: $(STAMP)
	rm -rf $(OUT)
	$(BIN)/dataigm concepts
	$(BIN)/dataigm prompts build --concept church --kinds forget,replace --out $(OUT)/prompts/church.jsonl
	$(BIN)/python examples/draw_prompt_images.py $(OUT)/prompts/church.jsonl $(OUT)/images
	$(BIN)/dataigm ingest $(OUT)/images/train --out $(OUT)/dataigm --concept church --split train --source generated
	$(BIN)/dataigm ingest $(OUT)/images/test --out $(OUT)/dataigm --concept church --split test --source generated
	$(BIN)/dataigm validate $(OUT)/dataigm
	$(BIN)/dataigm info $(OUT)/dataigm
	HF_HUB_OFFLINE=1 $(BIN)/python -c "from datasets import load_dataset; ds = load_dataset('$(OUT)/dataigm', 'church'); \
	print(ds); print('class names:', ds['train'].features['cls'].names)"

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
