# `make demo` and `make test` work on a fresh machine with only Python 3.11+:
# each creates .venv when missing and installs fnn with the extras it needs (the suite's: dev,
# examples and docs, since it builds the documentation site).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fnn-installed

.PHONY: demo test chromium docs notebooks lint bench interop interop-fixtures onnx clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,examples,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/digits_cnn.py

# Three workers on two cores: with two, the cores sat idle a sixth of the time (tests waiting on
# subprocesses, a browser, watchdog timeouts); a third worker fills it (here 853 s against 906 s).
test: $(STAMP) chromium
	$(PY) -m pytest -n 3 --dist worksteal -q

# The playground's browser test drives Debian's chromium. Installed where we may (root with
# apt-get); elsewhere that one test skips and says why.
chromium:
	@command -v chromium >/dev/null || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
	  { $(APT_CHROMIUM) || { apt-get update -q >/dev/null && $(APT_CHROMIUM); }; }; } || \
	  echo "make: chromium not installed; the playground's browser test will skip"
APT_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null

# The documentation site, warnings as errors (a broken reference fails the build). The suite
# builds it too (tests/test_site.py), so `make test` installs the docs extra.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# notebooks/ run top to bottom into docs/notebooks/, outputs included, for the site (after editing one).
notebooks: $(STAMP)
	$(PY) notebooks/render.py

# The speed suite against the peers, in its own environment (the peers are large).
bench:
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet -e '.[bench]'
	@# fnn is installed editable: byte-compile it, as pip does the peers' wheels, so imports compare alike
	.venv-bench/bin/python -m compileall -q fnn
	@# the experiments behind the targets run.py reports missed, Repeat's and sharding's; RESULTS.md quotes them
	for b in recurrent_variants conv_cpu fused_optimizer scan_layers sharding; do .venv-bench/bin/python benchmarks/$$b.py || exit 1; done
	.venv-bench/bin/python benchmarks/run.py

# fnn.interop against the real PyTorch, Keras and Hugging Face libraries, in their own environment:
# the fixtures the suite reads (tests/fixtures/interop) and the equivalence results (interop/results.md).
INTEROP := .venv-interop/bin/python
$(INTEROP):
	$(PYTHON) -m venv .venv-interop
	$(INTEROP) -m pip install --quiet -e '.[interop]'

# fnn.export_onnx against the real converter and onnxruntime, in their own environment (jax2onnx
# brings Flax, Equinox and Orbax along): tests/test_onnx.py's round trips, which `make test` skips.
onnx:
	test -x .venv-onnx/bin/python || $(PYTHON) -m venv .venv-onnx
	.venv-onnx/bin/python -m pip install --quiet -e '.[onnx]' pytest hypothesis filelock
	.venv-onnx/bin/python -m pytest -q -p no:cacheprovider tests/test_onnx.py

interop-fixtures: $(INTEROP)
	$(INTEROP) interop/make_fixtures.py tests/fixtures/interop

interop: $(INTEROP)
	$(INTEROP) interop/compare.py interop/results

lint: $(STAMP)
	$(VENV)/bin/ruff check fnn tests benchmarks examples interop notebooks/render.py conftest.py
	$(VENV)/bin/ruff format --check fnn tests benchmarks examples interop notebooks/render.py conftest.py

clean:
	rm -rf $(VENV) .venv-bench .venv-interop build site *.egg-info
