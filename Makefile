# Set-up, data, tests and a short benchmark. `make` = install + get_data. `make install` installs the
# repo (cnns) and portable_poptorch editable into .venv through requirements.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: all install get_data test test-fast benchmark clean

all: install get_data

install:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	@echo "Replacing pillow with pillow-simd (AVX2 build), as the original application does"
	@if $(PIP) uninstall -y -q pillow && CC="cc -mavx2" $(PIP) install -q --no-cache-dir --no-deps --force-reinstall pillow-simd; then \
		echo "pillow-simd installed"; \
	else \
		echo "pillow-simd could not be built here (it needs a C compiler and the libjpeg/zlib headers, e.g. apt-get install libjpeg62-turbo-dev zlib1g-dev); keeping pillow"; \
		$(PIP) install -q pillow; \
	fi

get_data:
	bash datasets/get_images.sh

test:
	OMP_NUM_THREADS=1 $(PY) -m pytest -n auto tests portable_poptorch/tests

test-fast:
	OMP_NUM_THREADS=1 $(PY) -m pytest -n auto -m "not slow" tests portable_poptorch/tests

benchmark:
	$(PY) inference/run_benchmark.py --data generated --model resnet18 --batch-size 8 --device-iterations 4 --iterations 10 --precision 32.32 --random-weights

clean:
	rm -rf $(VENV) logs inference/logs train/logs cnns.egg-info portable_poptorch/src/portable_poptorch.egg-info
