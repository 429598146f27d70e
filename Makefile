# mnist_assets: the contract commands (see README.md).
#
# Values given on the command line (DATASET, DECISIONS, SPLIT, HERE, IMAGES, VIEW, WORKER, PORT, APP_PORT,
# DATASETS) reach the commands as typed, through the environment, quoted there ("$$DATASET"), never
# as text the shell or make parses: `make review DATASET='mnist; touch x'` names a dataset that does
# not exist, DECISIONS='batch$1.csv' names that file, and a file name may hold spaces. IMAGES lists
# several files the way a shell command line does (Python's shlex): IMAGES='"my digit.png" other.png'
# is two files.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PORT ?= 3000
APP_PORT ?= 5151
LABEL_STUDIO_PORT ?= 8080
DATASET ?= mnist
ifeq ($(origin WORKER),undefined)
WORKER := $(shell hostname)
endif
# make expands `$` in a command-line value whenever it reads it or hands it to a command
# (`batch$1.csv` became batch.csv, `$(shell ...)` ran): keep each value as typed, exported where it was.
USER_VALUES := DATASET DECISIONS SPLIT HERE IMAGES VIEW WORKER PORT APP_PORT DATASETS LABEL_STUDIO_PORT
define as_typed
override $(1) := $$(value $(1))
$(if $(filter command environment,$(firstword $(origin $(1)))),export $(1))
endef
$(foreach name,$(USER_VALUES),$(eval $(call as_typed,$(name))))
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: setup run test ui app bench clean review worker predict label-requests label-studio annotate annotate-pull

setup: $(STAMP)

# Re-run the installer only when what it installs changed.
$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

run: export DATASETS := $(DATASETS)
run: setup
	$(PY) -m mnist_assets.run_all

test: setup
	bash scripts/test_packages.sh
	bash scripts/label_studio_setup.sh
	$(PY) -m pytest

ui: export PORT := $(PORT)
ui: setup
	$(PY) -m mnist_assets.ui -h 127.0.0.1 -p "$$PORT" -w workspace.yaml

app: export APP_PORT := $(APP_PORT)
app: export DATASET := $(DATASET)
app: export VIEW := $(VIEW)
app: setup
	$(PY) -m mnist_assets.app --port "$$APP_PORT" --dataset "$$DATASET" $${VIEW:+--view "$$VIEW"}

# Label Studio (docs/review.md#label-studio): its own environment, 127.0.0.1 only, offline.
label-studio: export LABEL_STUDIO_PORT := $(LABEL_STUDIO_PORT)
label-studio: setup
	bash scripts/label_studio_setup.sh
	$(PY) -m mnist_assets.annotation.server --port "$$LABEL_STUDIO_PORT"

# A saved view's samples out to the dataset's Label Studio project (VIEW, default review-queue), and
# the finished annotations back into its review log.
annotate: export DATASET := $(DATASET)
annotate: export VIEW := $(VIEW)
annotate: setup
	$(PY) -m mnist_assets.annotate send --dataset "$$DATASET" --view "$${VIEW:-review-queue}"

annotate-pull: export DATASET := $(DATASET)
annotate-pull: setup
	$(PY) -m mnist_assets.annotate pull --dataset "$$DATASET"

# One Celery worker in the foreground, one step at a time (docs/scale-out.md): it needs the same
# environment as the launcher (DAGSTER_HOME, DAGSTER_CELERY_*, DAGSTER_PG_*, MNIST_ASSETS_*, FIFTYONE_DATABASE_URI).
# mnist_assets/worker.py first refuses a broker, result backend or MongoDB on another host without a
# password, and Dagster storage on SQLite.
worker: export WORKER := $(WORKER)
worker: setup
	$(PY) -m mnist_assets.worker
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dagster-celery worker start -A dagster_celery.app -y deploy/celery.yaml -n "$$WORKER" -- --concurrency=1 --loglevel=INFO

# Record the label decisions of a CSV or JSON file and apply them (mnist_assets/review.py); SPLIT
# names the split of rows that name none; HERE=1 applies them in this process even when a daemon runs.
review: export DECISIONS := $(DECISIONS)
review: export DATASET := $(DATASET)
review: export SPLIT := $(SPLIT)
review: export HERE := $(HERE)
review: setup
	@test -n "$$DECISIONS" || { echo "usage: make review DECISIONS=<file.csv|file.json> [DATASET=mnist] [SPLIT=train|validation|test] [HERE=1]" >&2; exit 2; }
	$(PY) -m mnist_assets.review import --dataset "$$DATASET" $${SPLIT:+--split "$$SPLIT"} $${HERE:+--here} -- "$$DECISIONS"

# The next batch of unlabeled samples to label (label_requests' file: sample, file, the model's guess).
label-requests: export DATASET := $(DATASET)
label-requests: setup
	$(PY) -m mnist_assets.review requests --dataset "$$DATASET"

# Classify image files with a dataset's released model (mnist_assets/predict.py); IMAGES is split
# as a shell splits words (shlex), so IMAGES='"my digit.png" b.jpg' is two files.
define PREDICT
import os, shlex, sys
from mnist_assets.predict import main
try:
    images = shlex.split(os.environ["IMAGES"])
except ValueError as error:  # an unclosed quote, or a trailing backslash
    print(f"make predict: IMAGES cannot be split into file names ({str(error).lower()}): close every quote, escape a trailing backslash, e.g. IMAGES='a.png \"my digit.png\"'.", file=sys.stderr)
    sys.exit(2)
sys.exit(main(["--dataset", os.environ["DATASET"], "--", *images]))
endef
predict: export IMAGES := $(IMAGES)
predict: export DATASET := $(DATASET)
predict: export PREDICT := $(PREDICT)
predict: setup
	@test -n "$$IMAGES" || { echo "usage: make predict IMAGES='a.png \"my digit.png\"' [DATASET=mnist]" >&2; exit 2; }
	$(PY) -c "$$PREDICT"

bench: setup
	$(PY) benchmarks/run_all.py

# Keeps .mnist_assets/reviews and label-studio: the review logs and the annotators' answers are people's work, which nothing rebuilds.
clean:
	find .mnist_assets -mindepth 1 -maxdepth 1 ! -name reviews ! -name label-studio -exec rm -rf {} + 2>/dev/null || true
	rm -rf .dagster_home/storage .dagster_home/history .dagster_home/logs .dagster_home/schedules
