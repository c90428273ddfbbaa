# Everything installs into .venv in the project root; system packages come from apt where we can.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COACH := $(VENV)/bin/coach
STAMP := $(VENV)/.installed
TORCH := 2.13.0
EXAMPLE := examples/example-call.wav
# espeak-ng speaks the example call and the test audio; chromium runs the browser tests; the cluster
# tests start their own throwaway PostgreSQL and Redis servers from Debian's packages
SYSTEM_PACKAGES := espeak-ng sox chromium postgresql redis-server
# ../shared/tools/synth_call.py speaks the scripted calls with these
BENCH_PACKAGES := festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k

.PHONY: install system-deps models train run analyze-example test test-fast bench bench-live bench-cluster bench-lines bench-writers reliability bench-redaction example clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: 2.13.0 (CPU) is the build this project runs on; an unpinned torch pulls GBs of CUDA
	$(PY) -m pip install --quiet torch==$(TORCH)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

# sox and festival speak the benchmark calls.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES) $(EXTRA_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing" >&2; exit 1; fi; \
	fi

models: install
	$(COACH) models

# The sentiment head and trigger heads in models/heads/, from models/data/ and models/exemplars.yaml (deterministic).
train: install
	$(COACH) train

$(EXAMPLE): | install system-deps
	$(PY) -m coach.demo $(EXAMPLE)

example: $(EXAMPLE)

# The main job on the embedded default: the server, with the example call played into it as a live
# call through /ws/twilio; it prints the sidebar and board links. Ctrl-C stops it.
PORT ?= 8000
run: install system-deps models $(EXAMPLE)
	$(COACH) serve --port $(PORT) --play $(EXAMPLE)

# The example call through `coach analyze` (the same pipeline, no server), printed as a transcript.
analyze-example: install system-deps models $(EXAMPLE)
	$(COACH) analyze $(EXAMPLE)

test: install system-deps models
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not model and not browser"

# Benchmarks need ../shared (scripted calls, real recordings, the scorer); see docs/benchmarks.md.
bench: install models
	$(MAKE) system-deps EXTRA_PACKAGES="$(BENCH_PACKAGES)"
	$(PY) benchmarks/asr_bench.py $(BENCH_ARGS)

# End-to-end prompt latency of `coach serve` with real websocket clients (docs/benchmarks.md):
# `make bench-live N=10` plays N calls at once (different recordings, 2 s apart, real time, through
# /ws/twilio) into the coach and into the baselines (LIVE_SYSTEMS), in the same run;
# CURVE=1,4,6,8,10,12 measures the coach at each N (1: two calls one after another). With the calls'
# truth beside them: labelled moments delivered within 4 s, WER of the finals (and its ratio to one
# call on the same audio), finals by rung of the quality ladder. Uses the synthesized calls in
# bench-out/calls (`make bench` makes them), else the example call.
N ?= 10
CURVE ?= $(N)
LIVE_SYSTEMS ?= coach,coach-no-ladder,naive
LIVE_CALLS ?= $(if $(wildcard bench-out/calls/dev-*.wav),bench-out/calls/dev-*.wav,$(EXAMPLE))
bench-live: install models $(EXAMPLE)
	$(PY) benchmarks/live_bench.py --recordings '$(LIVE_CALLS)' --systems $(LIVE_SYSTEMS) --concurrency $(CURVE) \
	  --baseline-concurrency $(N) --single 2 --stagger 2

# The trigger detector on hand-labelled call lines written for the project (no ../shared needed):
# recall per label and false alarms, rules alone and with the trigger heads.
# Cluster mode (docs/deployment.md): three nodes with stand-in models on a throwaway PostgreSQL and
# Redis, a node killed mid-call, and a 1,000-call floor's traffic at the example call's event rate.
bench-cluster: install system-deps models $(EXAMPLE)
	mkdir -p bench-out
	$(COACH) analyze $(EXAMPLE) --jsonl > bench-out/example-events.jsonl
	$(PY) benchmarks/cluster_bench.py --rate-from bench-out/example-events.jsonl --json bench-out/cluster.json

bench-lines: install models
	$(PY) benchmarks/lines_bench.py benchmarks/lines/*.jsonl benchmarks/lines/heldout-calls/*.jsonl benchmarks/lines/heldout-writers/*.jsonl

# Leave-one-writer-out (docs/benchmarks.md, "Detection"): the candidate turn model (not the shipped
# ensemble; docs/decisions/0003) trained on every writer's calls but one and scored on that one, for
# each writer; then trained on all and scored on the held-out calls and writers, which nothing is
# trained or calibrated on. mpnet frozen (the recipe two cores can repeat); counts only; ~25 min.
bench-writers: install models
	$(PY) benchmarks/writers_bench.py --encoder mpnet --blocks 0 --calibrate lines-alone,lines \
	  --heldout benchmarks/lines/heldout-calls benchmarks/lines/heldout-writers --json bench-out/writers.json

# Reliability figures (docs/reliability.md): fuzzing of every input, injected faults (stand-in models).
reliability: install
	$(PY) benchmarks/reliability_bench.py

# Redaction recall on generated calls with spoken card and account numbers (real models; needs ../shared).
bench-redaction: install models
	$(MAKE) system-deps EXTRA_PACKAGES="$(BENCH_PACKAGES)"
	$(PY) benchmarks/redaction_bench.py

clean:
	rm -rf $(VENV) examples/*.wav .pytest_cache bench-out test-artifacts
