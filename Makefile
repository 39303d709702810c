# dfcore: a reproducible deepfake-detection study.
# `make reproduce` and `make test` do all the set-up themselves; `make help` lists every target.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.SECONDEXPANSION:

VENV     ?= .venv
PYTHON   ?= python3
PROFILE  ?= demo
DATA_DIR ?=
REPORTS_ROOT ?= reports
PYTEST_ARGS ?=
SHARED_DATA ?= ../shared/data

PY      := $(VENV)/bin/python
OUT     := $(REPORTS_ROOT)/$(PROFILE)
# The stages are the numbered notebooks (dfcore.params.stages reads the same list).
STAGES  := $(sort $(basename $(notdir $(wildcard notebooks/[0-9][0-9]_*.ipynb))))
EXECUTED := $(foreach s,$(STAGES),$(OUT)/executed/$(s).ipynb)
HTML     := $(foreach s,$(STAGES),$(OUT)/html/$(s).html)
DFCORE_SRC := $(shell find dfcore -name '*.py' 2>/dev/null)
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help setup doctor reproduce compare test bench bench-mim bench-crops predict lab lock clean-reports FORCE

help: ## list the targets
	@echo "dfcore: a reproducible deepfake-detection study"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: PROFILE=$(PROFILE) (one of: $(notdir $(wildcard params/profiles/*))), DATA_DIR=<data root>,"
	@echo "           VENV=$(VENV), REPORTS_ROOT=$(REPORTS_ROOT)"

setup: $(STAMP) ## create the virtual environment from the lock (idempotent; seconds when nothing changed)

# Installs exactly the pinned versions, then dfcore itself (editable) without touching them.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-warn-script-location -r requirements.lock 2> >(grep -v "is ignored: it is neither" >&2)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

doctor: $(STAMP) ## check what a run of PROFILE needs (packages, devices, disk, its data and weights) and say what is missing
	$(PY) -m dfcore doctor --profile $(PROFILE) $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")

reproduce: $(OUT)/index.html ## run every notebook with papermill and render the HTML reports into reports/<profile>/
	@echo "Report: $(OUT)/index.html"

# Stage order: each notebook reads the files the one before it wrote.
$(OUT)/executed/02_mim_pretrain.ipynb: $(OUT)/executed/01_data_manifests.ipynb
$(OUT)/executed/03_phase1_head.ipynb: $(OUT)/executed/02_mim_pretrain.ipynb
$(OUT)/executed/04_phase2_finetune.ipynb: $(OUT)/executed/03_phase1_head.ipynb
$(OUT)/executed/05_evaluation.ipynb: $(OUT)/executed/04_phase2_finetune.ipynb
$(OUT)/executed/06_gradcam_gallery.ipynb: $(OUT)/executed/05_evaluation.ipynb

# The parameters a stage runs with, resolved by `python -m dfcore params` (dfcore.params: the defaults of
# dfcore/config.py, params/common.yaml, params/<stage>.yaml, the profile's files after those of any profile it
# extends, then make's reports_root and DATA_DIR). The file is rewritten only when they change, so a stage re-runs
# exactly when its parameters do, whichever file they came from.
.PRECIOUS: $(OUT)/params/%.yaml
$(OUT)/params/%.yaml: FORCE | $(STAMP) profile-exists
	@mkdir -p $(@D)
	@$(PY) -m dfcore params $* --profile $(PROFILE) --set reports_root "$(REPORTS_ROOT)" \
	  $(if $(and $(DATA_DIR),$(filter 01_data_manifests,$*)),--set data_dir "$(DATA_DIR)") > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# papermill writes to a temp file that replaces the target only on success; a failed run keeps its partial
# notebook as <stage>.failed.ipynb for inspection. A training stage re-run with the same parameters, data and
# training code reads its finished run back instead of training again.
$(OUT)/executed/%.ipynb: notebooks/%.ipynb $(OUT)/params/%.yaml $(DFCORE_SRC) $(STAMP)
	@mkdir -p $(@D)
	@echo "=== $* (profile $(PROFILE))"
	$(VENV)/bin/papermill $< $(@D)/$*.failed.ipynb -k python3 --cwd . --no-progress-bar -f $(OUT)/params/$*.yaml
	@mv $(@D)/$*.failed.ipynb $@

$(OUT)/html/%.html: $(OUT)/executed/%.ipynb
	$(VENV)/bin/jupyter nbconvert --log-level WARN --to html --output-dir $(@D) $<

$(OUT)/index.html: $(HTML)
	$(PY) -m dfcore.reporting.index $(OUT)

compare: $(STAMP) ## compare every run under REPORTS_ROOT from its metrics (nothing re-run): REPORTS_ROOT/index.html, compare.csv/md/tex
	$(PY) -m dfcore compare $(REPORTS_ROOT)
	@echo "Comparison: $(REPORTS_ROOT)/index.html"

.PHONY: profile-exists
profile-exists:
	@test -d params/profiles/$(PROFILE) || { echo "No profile '$(PROFILE)': expected a folder params/profiles/$(PROFILE)/ (have: $$(ls params/profiles | tr '\n' ' '))" >&2; exit 2; }

test: $(STAMP) ## run the test suite (includes one end-to-end run of all notebooks, profile smoke)
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## run the benchmarks; results are written to reports/bench/*.json
	$(PY) -m dfcore.bench --out $(REPORTS_ROOT)/bench --shared-data $(SHARED_DATA) --predict-profile dfdc-cpu

# The profile's report index shows the result: rebuilt here when the profile has been reproduced already.
bench-mim: $(STAMP) ## MIM vs random init, phases 1+2, val/test AUC (PROFILE, DATA_DIR; long): reports/bench/*.json
	$(PY) -m dfcore.bench --mim-vs-random --profile $(PROFILE) $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") \
	  --out $(REPORTS_ROOT)/bench
	@if [ -f $(OUT)/index.html ]; then $(PY) -m dfcore.reporting.index $(OUT) --index-only; fi

bench-crops: $(STAMP) ## a trained PROFILE's extra sets scored with its own crops and the default ones: reports/bench/*.json
	$(PY) -m dfcore.bench --crop-matching --profile $(PROFILE) --reports-root $(REPORTS_ROOT) --out $(REPORTS_ROOT)/bench

INPUT ?=
PREDICT_ARGS ?=
predict: $(STAMP) ## score images, folders or videos with a trained profile: make predict INPUT="a.jpg b.mp4" [PROFILE=] [PREDICT_ARGS="--cam --out DIR"]
	@test -n "$(INPUT)" || { echo 'Give the inputs: make predict INPUT="photo.jpg videos/" PROFILE=$(PROFILE)' >&2; exit 2; }
	$(PY) -m dfcore predict $(INPUT) --checkpoint $(OUT) $(PREDICT_ARGS)

lab: $(STAMP) ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks

lock: $(STAMP) ## re-pin requirements.lock from the environment and regenerate environment.yml
	$(PY) tools/lock.py

clean-reports: ## delete reports/<profile> (PROFILE=...)
	rm -rf $(OUT)

FORCE:
