# slocast: `make demo` (set up + run the main job end to end) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The demo needs only the core and the tree compiler: a fresh machine gets to results sooner.
DEMO_STAMP := $(VENV)/.installed-demo
LLMD   := data/llm_serving/llmd_h200_traces
DEMO_BUNDLE := .slocast/bundles/llm-ttft-demo

.PHONY: install demo test test-fast image test-image lint typecheck bench bench-evaluate bench-serve bench-trainer bench-tune bench-sim docs proto proto-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,xgboost,catboost,serve,store,compile,tune,sim,dashboard,docs,dask]'
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[compile]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	@echo "== slocast demo: calibrated TTFT / TPOT upper bounds on the bundled llm-d H200 traces =="
	$(BIN)/slocast evaluate --dataset llmd-ttft:$(LLMD)/bimodal-h200.jsonl.gz --report reports/llmd-ttft-bimodal
	$(BIN)/slocast evaluate --dataset llmd-tpot:$(LLMD)/bimodal-h200.jsonl.gz --report reports/llmd-tpot-bimodal
	$(BIN)/slocast evaluate --dataset llmd-ttft:$(LLMD)/chatbot-synthetic-h200.jsonl.gz --report reports/llmd-ttft-chatbot
	$(BIN)/slocast evaluate --dataset llmd-tpot:$(LLMD)/chatbot-synthetic-h200.jsonl.gz --report reports/llmd-tpot-chatbot
	rm -rf $(DEMO_BUNDLE)
	$(BIN)/slocast train --dataset llmd-ttft:$(LLMD)/chatbot-synthetic-h200.jsonl.gz --out $(DEMO_BUNDLE)
	@echo "== three jobs through the trained bundle (JSON lines in, JSON lines out) =="
	$(BIN)/python -c "import gzip,sys; sys.stdout.writelines(l.decode() for l in gzip.open('$(LLMD)/chatbot-synthetic-h200.jsonl.gz').readlines()[:3])" \
		| $(BIN)/slocast predict --bundle $(DEMO_BUNDLE) --input -
	@echo "== reports: reports/*/report.html (open reports/llmd-ttft-bimodal/report.html) =="

test: $(STAMP)
	$(BIN)/pytest -n 2 -q

# The container image (deploy/Dockerfile) and its smoke tests. ENGINE: docker or podman;
# ENGINE_BUILD_ARGS / SLOCAST_ENGINE_RUN_ARGS: flags a host's runtime needs (see README).
ENGINE ?= docker
IMAGE ?= slocast:dev
image:
	$(ENGINE) build $(ENGINE_BUILD_ARGS) -f deploy/Dockerfile -t $(IMAGE) .

test-image: $(STAMP)
	SLOCAST_IMAGE=$(IMAGE) SLOCAST_ENGINE="$${SLOCAST_ENGINE:-$(ENGINE)}" $(BIN)/pytest -q -p no:xdist tests/deploy/test_image.py

test-fast: $(STAMP)
	$(BIN)/pytest -n 2 -q -m "not slow"

lint: $(STAMP) proto-check
	$(BIN)/ruff check src tests bench docs
	$(BIN)/ruff format --check src tests bench docs

PROTOC = $(BIN)/python -m grpc_tools.protoc -Islocast/serving/pb=proto

proto: $(STAMP)  ## regenerate the gRPC code from proto/slocast.proto
	$(PROTOC) --python_out=src --pyi_out=src --grpc_python_out=src slocast/serving/pb/slocast.proto

proto-check: $(STAMP)  ## the committed gRPC code is what the proto generates
	tmp=$$(mktemp -d) && $(PROTOC) --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp \
		slocast/serving/pb/slocast.proto && diff -r -x __init__.py -x __pycache__ $$tmp/slocast/serving/pb src/slocast/serving/pb

typecheck: $(STAMP)
	$(BIN)/mypy

bench: bench-evaluate bench-serve bench-trainer bench-tune bench-sim

bench-evaluate: $(STAMP)
	$(BIN)/slocast bench evaluate

docs: $(STAMP)  ## the documentation site (reference pages generated from the code) in site/
	$(BIN)/python docs/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) reports site .slocast .pytest_cache .mypy_cache .ruff_cache

bench-serve: $(STAMP)
	$(BIN)/slocast bench serve

bench-trainer: $(STAMP)
	$(BIN)/slocast bench trainer

bench-tune: $(STAMP)
	$(BIN)/slocast bench tune

bench-sim: $(STAMP)
	$(BIN)/slocast bench sim
