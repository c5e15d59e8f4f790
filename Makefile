# edgepipe: `make demo` shows the edge running; `make models` rebuilds what it runs; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= default
# tflite-runtime 2.14 (the runtime of older Pi images) needs numpy<2: it gets a venv of its own
VENV_TFLITE ?= .venv-tflite214

.PHONY: demo venv venv-edge venv-demo venv-tflite models table evaluate test system-packages soak lint clean bench pi-check rate demo-update test-update-crash cluster bench-brokers nab bench-fleet realdata-series

# The edge side end to end on shipped data: no TensorFlow, the committed models, a real broker.
demo: venv-demo
	$(BIN)/python -m tools.demo $(DEMO_ARGS)

venv: $(VENV)/.installed-dev

venv-edge: $(VENV)/.installed-edge

venv-demo: $(VENV)/.installed-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-edge $(VENV)/.installed-demo

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@ $(VENV)/.installed-edge

$(VENV)/.installed-edge: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[edge]'
	touch $@

# Optional: a second environment with tflite-runtime 2.14 + numpy<2 (Python <= 3.11 only: no newer wheels).
venv-tflite: $(VENV_TFLITE)/.installed

$(VENV_TFLITE)/.installed:
	$(PYTHON) -m venv $(VENV_TFLITE)
	$(VENV_TFLITE)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_TFLITE)/bin/pip install --quiet 'numpy<2' 'tflite-runtime==2.14.*'
	touch $@

# Train and export all four models with the default profile (about 20-30 min on 2 cores).
models: venv
	$(BIN)/python -m training all --profile $(PROFILE)

# Speed, size and memory into docs/benchmarks.md (edge part needs no TensorFlow; runs on a Pi too).
bench: venv
	-$(MAKE) --no-print-directory venv-tflite
	$(BIN)/python -m tools.bench
	$(BIN)/python -m training bench
	$(BIN)/python -m tools.bench_brokers

# fleet status over 2,000 devices' retained state and a 20-agent rollout, into docs/benchmarks.md (no TensorFlow)
bench-fleet: venv
	$(BIN)/python -m tools.bench_fleet

# Readings/s an agent takes without loss through the shipped deploy/mosquitto/ conf and ACL (docs/reliability.md).
rate: venv
	$(BIN)/python -m tools.rate

table: venv
	$(BIN)/python -m training table

# The alerts on the 51 NAB files (../shared/nab or EDGEPIPE_NAB), scored by NAB's rules, into docs/real-data.md.
# The trainer's defaults; models cached in reports/nab/models (first run: about 30 min on 2 cores; then seconds). NAB_ARGS="--only speed".
NAB_ARGS ?=
nab: venv
	nice -n 10 $(BIN)/python -m training nab -j 3 $(NAB_ARGS)

# The forecaster on 13 real series (statsmodels' and sktime's bundled data) into docs/real-data.md: about
# 25 min wall on a loaded 2-core machine with 3 jobs. Needs sktime (`pip install -e '.[realdata]'`).
SERIES_ARGS ?=
realdata-series: venv
	nice -n 10 $(BIN)/python -m training realdata series --jobs 3 $(SERIES_ARGS)

# Every quality target, measured on the committed files (exits 1 if one is missed).
evaluate: venv
	$(BIN)/python -m training evaluate

# First the system packages the tests use (tools/system_packages.py): installed as root or with passwordless
# sudo on Debian/Ubuntu/Raspberry Pi OS; otherwise one `apt-get install` line, and the tests needing them skip.
test: system-packages
	$(MAKE) --no-print-directory venv
	-$(MAKE) --no-print-directory venv-tflite
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

system-packages:
	$(PYTHON) tools/system_packages.py

# The hostile-input campaign ten times larger (about 50,000 cases; 20-40 minutes on 2 cores) and the outbox through 110k readings offline.
soak: venv
	EDGEPIPE_SOAK=10 $(BIN)/python -m pytest -q tests/test_hostile.py tests/test_device_faults.py \
		"tests/test_reliability.py::test_outbox_stays_bounded_and_memory_flat_through_100k_readings_offline"

# Issue 26's broker acceptance at full size (about 3 minutes): 12 agents over a three-node NATS cluster that loses
# a node, and the central broker behind a bridge down for 60 s. `make test` runs 3 agents and a 10 s outage.
cluster: venv
	EDGEPIPE_CLUSTER=1 $(BIN)/python -m pytest -q -s tests/test_node_loss.py tests/test_bridge.py

# Messages/s through mosquitto (shipped conf), one NATS node and the NATS cluster, same publisher: the "Brokers"
# section of docs/benchmarks.md (about 2 minutes on 2 cores).
bench-brokers: venv
	$(BIN)/python -m tools.bench_brokers

# A SIGKILL at every step of a model update (`make test` covers four of the seven; about 40 s).
test-update-crash: venv
	EDGEPIPE_UPDATE_ALL_STEPS=1 $(BIN)/python -m pytest -q tests/test_update_crash.py

# A model update and an automatic rollback live, with the Home Assistant `update` state (docs/updates.md).
demo-update: venv-demo
	$(BIN)/python -m tools.demo_update $(DEMO_ARGS)

# arm64 Debian bookworm and trixie (Raspberry Pi OS's base) under qemu: deploy/install-pi.sh, edge check,
# `pytest -m edge` and the demo inside each, then a table. Root only; images and wheels cached in
# .cache/pi-rootfs/ (or EDGEPIPE_PI_CACHE). Not part of `make test`. PI_CHECK_ARGS="--suite trixie" picks one.
# Exit 3: only the network (Debian mirror, PyPI) kept it from running (.ci/run skips then).
pi-check: venv-edge
	$(BIN)/python -m tools.pi_check $(PI_CHECK_ARGS)

lint: venv
	$(BIN)/ruff check edge fleet training tests tools

clean:
	rm -rf $(VENV) $(VENV_TFLITE) .pytest_cache reports
