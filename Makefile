# Two entry points for a fresh machine: `make demo` and `make test`.
# Everything is installed into $(VENV); apt packages through scripts/install-apt.sh.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
# torch is pinned: 2.13.0 is a local CPU build; an unpinned torch pulls GBs of CUDA wheels.
TORCH_PIN := torch==2.13.0

.PHONY: install apt demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev,quant]'
	touch $(STAMP)

install: apt $(STAMP)

apt:
	bash scripts/install-apt.sh

LLAMADNA := $(VENV)/bin/llamadna
THREADS ?= 2
DEMO_EPOCHS ?= 2
# a real cross-species test set (never trained, tuned or indexed on): the demo annotates it
BENCHMARK ?= ../shared/benchmarks/mito

# Demo: SIMULATED reads (the bundle's reference regions with its real variants applied) give
# every dataset window SPLASH scores; builds are kept apart (one anchors table per build).
# Then: pretrain the tiny encoder, index the reference (genes, minimap2, FAISS), train the
# retrieval-augmented tiny model on split_gene, annotate its test rows and the mito benchmark.
demo: install
	$(LLAMADNA) simulate-samples --out $(DEMO_OUT)/samples --n-samples 8 --depth 30 --read-len 100
	$(LLAMADNA) splash --samples $(DEMO_OUT)/samples/GRCh38/samples.tsv --threads $(THREADS) \
		--out $(DEMO_OUT)/splash/anchors.GRCh38.tsv
	$(LLAMADNA) splash --samples $(DEMO_OUT)/samples/GRCh37/samples.tsv --threads $(THREADS) \
		--out $(DEMO_OUT)/splash/anchors.GRCh37.tsv
	$(LLAMADNA) build-dataset --out $(DEMO_OUT)/dataset \
		--splash GRCh38=$(DEMO_OUT)/splash/anchors.GRCh38.tsv \
		--splash GRCh37=$(DEMO_OUT)/splash/anchors.GRCh37.tsv
	$(LLAMADNA) pretrain-encoder --out $(DEMO_OUT)/encoder
	$(LLAMADNA) index --encoder $(DEMO_OUT)/encoder --dataset $(DEMO_OUT)/dataset --split split_gene \
		--out $(DEMO_OUT)/index
	$(LLAMADNA) train --dataset $(DEMO_OUT)/dataset --split split_gene --preset tiny \
		--encoder $(DEMO_OUT)/encoder --index $(DEMO_OUT)/index --out $(DEMO_OUT)/model \
		--epochs $(DEMO_EPOCHS)
	$(LLAMADNA) predict --dataset $(DEMO_OUT)/dataset --split split_gene --subset test \
		--model $(DEMO_OUT)/model --out $(DEMO_OUT)/predictions.test.tsv --show 5
	$(LLAMADNA) benchmark $(BENCHMARK) --model $(DEMO_OUT)/model --out $(DEMO_OUT)/benchmark.tsv --show 6

test: install
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
