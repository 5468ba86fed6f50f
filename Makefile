# pixloom's set-up. `make demo` installs everything and renders the default
# preset with the embedded models; `make test` installs everything and runs
# the tests. PYTHON may name another interpreter (a virtual environment's).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
PROMPT ?= a yellow star on a blue background
OUT ?= outputs

# torch is installed first and pinned exactly: an open range on a machine with
# no torch pulls a CUDA build with several GB of dependencies. The CLIP, taming
# and DALL-E packages declare torchvision, which pixloom does not use, so they
# are installed without dependencies; setup.py lists what they really need.
install:
	$(PIP) install "torch==2.13.0"
	$(PIP) install --no-deps "clip-anytorch==2.6.0" "taming-transformers-rom1504==0.0.6" "dall-e==0.1"
	$(PIP) install -e ".[test]"

demo: install
	$(PYTHON) -m pixloom render presets/default.yaml --prompt "$(PROMPT)" --out $(OUT)

test: install
	$(PYTHON) -m pytest -q

.PHONY: install demo test
