# caffepy: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DATA ?= data

.PHONY: install install-test proto demo demo-full test test-fast lint format bench fuzz clean

install:
	$(PIP) install -q .

install-test:
	$(PIP) install -q -e '.[test]'

proto:
	$(PYTHON) -m grpc_tools.protoc -Iprotos --python_out=caffepy/proto protos/caffe.proto

# The main job: Fashion-MNIST LMDBs, LeNet trained for 2,000 iterations, then a
# fine-tuning run from its snapshot.
demo: install
	caffepy data fashion-mnist $(DATA)
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

format:
	ruff format caffepy tests tools bench

bench: install-test
	$(PYTHON) bench/run.py

fuzz: install-test
	CAFFEPY_FUZZ_EXAMPLES=5000 $(PYTHON) -m pytest -q tests/test_fuzz.py

clean:
	rm -rf build dist *.egg-info .pytest_cache caffepy/proto/caffe_pb2.py
