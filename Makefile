# make demo | make test | make splits features heads finetune figures | make bench
# CONFIG picks the experiment (default: the embedded synthetic demo).
CONFIG ?= configs/demo.toml
PYTHON := .venv/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED = 0

.PHONY: setup lint test splits features pretrain heads finetune figures demo bench clean

setup: .venv/installed

# tf-keras declares a dependency on `tensorflow`; --no-deps keeps the CPU wheel the only TF.
.venv/installed: requirements.txt
	python3 -m venv .venv
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps tf-keras==2.21.0
	touch $@

lint: setup
	.venv/bin/ruff check .

test: setup
	$(PYTHON) -m pytest

splits: setup
	$(PYTHON) -m splits make --config $(CONFIG)

clean:
	rm -rf runs .pytest_cache

pretrain: setup
	$(PYTHON) -m extract pretrain --config $(CONFIG)

features: splits pretrain
	$(PYTHON) -m extract features --config $(CONFIG)

heads: features
	$(PYTHON) -m heads train --config $(CONFIG)

finetune: splits pretrain
	$(PYTHON) -m extract finetune --config $(CONFIG)

figures: setup
	$(PYTHON) -m analysis report --config $(CONFIG)

# The whole pipeline on the embedded synthetic set: data, pretrain, features, splits, heads,
# a short finetune of one fold, report.
demo:
	$(MAKE) heads finetune figures CONFIG=configs/demo.toml

bench: setup
	$(PYTHON) bench/splits.py
	$(PYTHON) bench/extract.py
	$(PYTHON) bench/heads.py
	$(PYTHON) bench/weights_quality.py
	$(PYTHON) bench/weights_limits.py
