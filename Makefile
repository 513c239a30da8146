# make demo | make test | make splits features heads finetune figures | make model export predict suggest | make bench | make bench-smoke
# CONFIG picks the experiment (default: the embedded synthetic demo); paths with spaces are fine.
# FORCE=1 redoes the outputs of the targets named on the command line (not their prerequisites):
#   make heads FORCE=1
CONFIG ?= configs/demo.toml
PYTHON := .venv/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED = 0
force = $(if $(FORCE),$(if $(filter $@,$(MAKECMDGOALS)),--force))
model_source = $(if $(MODEL),--model "$(MODEL)",--config "$(CONFIG)")

.PHONY: setup lint test check import splits features pretrain heads finetune figures model export predict suggest review \
	demo bench bench-smoke clean

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

# The tests in TEST_WORKERS processes (pytest-xdist), each file's tests in one of them (its
# module fixtures built once); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: setup
	$(PYTHON) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# The whole config against the method registry, before any stage runs.
check: setup
	$(PYTHON) -m heads check --config "$(CONFIG)"
	$(PYTHON) -m model check --config "$(CONFIG)"

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
	$(PYTHON) -m finetune train --config "$(CONFIG)" $(force)

figures: check
	$(PYTHON) -m analysis report --config "$(CONFIG)"

# The final model ([model]: the method, or "best" from the leaderboard, on every labelled row)
# into its model directory (runs/<name>/model unless [model] dir); `make export` adds its SavedModel.
model: features
	$(PYTHON) -m model fit --config "$(CONFIG)" $(force)

export: check
	$(PYTHON) -m model export $(model_source)

# The model's suggestions for a person to decide: review.html and Label Studio files in <model>/review;
# then `python -m model review import --config C FILE` turns the decisions into labels for the next fit.
review: setup
	$(PYTHON) -m model review export --config "$(CONFIG)" $(if $(BUDGET),--budget $(BUDGET))

# make predict IMAGES=folder-or-list (or FEATURES=file) [MODEL=dir] [OUT=file.csv]
predict: setup
	$(PYTHON) -m model predict $(model_source) $(if $(IMAGES),--images "$(IMAGES)") \
		$(if $(FEATURES),--features "$(FEATURES)") $(if $(OUT),--out "$(OUT)") $(force)

# The labels the model's own rows probably lack, ranked (suggestions.csv in the model directory).
suggest: setup
	$(PYTHON) -m model suggest $(model_source)

# The whole pipeline on the embedded synthetic set: data, pretrain, features, splits, heads,
# a short finetune of one fold, report; then the final model, its SavedModel, its predictions
# for 200 new synthetic images, and the labels its own rows lack.
demo:
	$(MAKE) heads finetune figures model export CONFIG=configs/demo.toml
	$(PYTHON) -m splits synthetic --config configs/demo.toml --out runs/demo/heldout --images 200 --seed 1
	$(MAKE) predict suggest CONFIG=configs/demo.toml IMAGES=runs/demo/heldout/images

BENCHES = splits extract heads search weights_quality weights_limits importer cluster as_published predict suggest \
	review suggest_memory selection

# Every benchmark in full (minutes each; reads ../shared/data); never part of `make test`.
bench: setup
	$(PYTHON) -m pip install --quiet -r bench/requirements.txt
	for b in $(BENCHES); do $(PYTHON) bench/$$b.py || exit 1; done

# Every benchmark on tiny inputs (bench/tiny.py stands in for ../shared/data): checks that each
# still runs after an API change; measures nothing. Run by .ci/run after the tests, all in one
# process (bench/smoke.py: the imports paid once).
bench-smoke: setup
	$(PYTHON) -m pip install --quiet -r bench/requirements.txt
	$(PYTHON) bench/smoke.py $(BENCHES)
