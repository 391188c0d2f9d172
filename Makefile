# cotlab: `make run` executes the workbook, `make test` checks it, `make lab` opens it.
VENV ?= .venv
PY = $(VENV)/bin/python

.PHONY: run test lab bench gpu-check mutation notebooks clean

# The venv, rebuilt when pyproject.toml changes. Torch comes first so that a machine without a GPU
# gets the CPU build: here torch==2.13.0+cpu lies on the machine's disk and pip finds it through the
# machine's find-links config; on other CPU-only machines add
# `--index-url https://download.pytorch.org/whl/cpu` to that line.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install "torch>=2.4"; \
	else \
		$(PY) -m pip install torch==2.13.0; \
	fi
	$(PY) -m pip install -e ".[notebooks,test]"
	touch $@

# Execute every notebook headless into runs/<time>-<profile>/ (profile: $$COTLAB_PROFILE, else cpu).
run: $(VENV)/.installed
	$(VENV)/bin/cotlab run

# Unit tests (the browser test among them, skipped with its reason where Chromium is missing), then every
# notebook executed in the smoke profile with its checked outputs compared. The unit tests run on two
# workers, a file each at a time and one thread each (tests/conftest.py); nbval runs alone (two kernels
# of two threads each on two cores were several times slower than one after the other).
test: $(VENV)/.installed
	COTLAB_PROFILE=smoke $(PY) -m pytest -q -rs -n 2 --dist loadfile tests
	COTLAB_PROFILE=smoke $(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

# Re-execute the committed notebooks in place in the cpu profile (before committing a change they show).
notebooks: $(VENV)/.installed
	$(VENV)/bin/cotlab run --in-place --profile cpu

bench: $(VENV)/.installed
	$(VENV)/bin/cotlab bench evaluator

# On a CUDA machine: every recipe trained a few steps in the gpu profile (bf16), every shipped generator
# sampled, one table of throughput and peak GPU memory (never part of `make test`). Without CUDA it says
# how to try it on the CPU: $(PY) -m cotlab.gpu_check --device cpu --profile smoke.
gpu-check: $(VENV)/.installed
	$(PY) -m cotlab.gpu_check

# How well the tests guard the numbers: mutmut over the number-making modules (cotlab/mutation.py), the score
# per module written to data/results/mutation.json and the README's table (never part of `make test`).
mutation: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[mutation]"
	$(VENV)/bin/cotlab bench mutation --ship
	$(VENV)/bin/cotlab report --readme

# Removes caches and build litter; keeps .venv and runs/ (your results).
clean:
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache *.egg-info lightning_logs
