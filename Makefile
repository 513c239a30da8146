# make demo | make test | make splits features heads finetune figures | make bench
# CONFIG picks the experiment (default: the embedded synthetic demo); paths with spaces are fine.
# FORCE=1 redoes the outputs of the targets named on the command line (not their prerequisites):
#   make heads FORCE=1
CONFIG ?= configs/demo.toml
PYTHON := .venv/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED = 0
force = $(if $(FORCE),$(if $(filter $@,$(MAKECMDGOALS)),--force))

.PHONY: setup lint test check import splits features pretrain heads finetune figures demo bench clean

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

# The whole config against the method registry, before any stage runs.
check: setup
	$(PYTHON) -m heads check --config "$(CONFIG)"

# A table dataset (precomputed features with labels) is imported before its splits; a no-op for images.
import: check
	$(PYTHON) -m features import --if-table --config "$(CONFIG)" $(force)

splits: import
	$(PYTHON) -m splits make --config "$(CONFIG)" $(force)

clean:
	rm -rf runs .pytest_cache

pretrain: check
	$(PYTHON) -m extract pretrain --config "$(CONFIG)" $(force)

features: splits pretrain
	$(PYTHON) -m extract features --config "$(CONFIG)" $(force)

heads: features
	$(PYTHON) -m heads train --config "$(CONFIG)" $(force)

finetune: splits pretrain
	$(PYTHON) -m extract finetune --config "$(CONFIG)" $(force)

figures: check
	$(PYTHON) -m analysis report --config "$(CONFIG)"

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
	$(PYTHON) bench/importer.py
	$(PYTHON) bench/cluster.py
	$(PYTHON) bench/as_published.py
