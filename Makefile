# caffepy: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DATA ?= data

.PHONY: install install-test proto demo demo-full test test-fast test-no-torch lint typecheck format bench fuzz clean

install:
	$(PIP) install -q .

install-test:
	$(PIP) install -q -e '.[test]'

# The same generator pip's build runs (setup.py's build_py hook).
proto:
	$(PYTHON) -c 'from setup import generate_proto; print(generate_proto())'

# The main job: Fashion-MNIST LMDBs, LeNet trained for 2,000 iterations, then a
# fine-tuning run from its snapshot. `caffepy warmup` compiles the kernels into
# Numba's cache first, in one process per core (a no-op once they are cached).
demo: install
	caffepy data fashion-mnist $(DATA)
	caffepy warmup
	caffepy train --solver models/lenet/solver_2000.prototxt
	caffepy finetune --solver models/lenet/finetune_solver.prototxt \
	    --weights models/lenet/snapshots/lenet_iter_2000.caffemodel
	@echo "Model: models/lenet/snapshots/  (lenet_iter_2000.caffemodel, lenet_ft_iter_500.caffemodel)"

demo-full: install
	caffepy data fashion-mnist $(DATA)
	caffepy train --solver models/lenet/solver.prototxt

test: install-test
	$(PYTHON) -m pytest -q -n 2 --timeout 900

test-fast: install-test
	$(PYTHON) -m pytest -q -n 2 -m "not slow"

lint:
	ruff check caffepy tests tools bench
	ruff format --check caffepy tests tools bench

# The public API's type hints (what and how strictly: [tool.mypy] in pyproject.toml).
typecheck:
	$(PYTHON) -m mypy

# torch feeds only the oracle tests: the whole suite must collect without it, and the
# gradient, error and in-place tests must pass with it blocked.
test-no-torch:
	$(PYTHON) -m pytest -q --no-torch --collect-only >/dev/null
	$(PYTHON) -m pytest -q -n 2 --no-torch -k "gradient or error or in_place" \
	    tests/layers tests/kernels tests/testing

format:
	ruff format caffepy tests tools bench

# CPU rows against PyTorch, then the GPU rows (skipped in one line without CuPy and
# a GPU); add --write-readme to either to update bench/README.md.
bench: install-test
	$(PYTHON) bench/run.py
	$(PYTHON) bench/gpu.py

fuzz: install-test
	CAFFEPY_FUZZ_EXAMPLES=5000 $(PYTHON) -m pytest -q tests/test_fuzz.py

clean:
	rm -rf build dist *.egg-info .pytest_cache caffepy/proto/caffe_pb2.py
