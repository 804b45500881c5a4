# The two commands of the README: `make demo` (main job on a built-in default) and `make test`.
# Both also apt-install what the demo and the tests use (as root): LibriVox speech, Chromium.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[eval,train,dev,demo]"
	touch $(STAMP)

# Demo speech with transcripts from a registry package (Debian's LibriVox test clips).
DEMO_SPEECH := /usr/share/pocketsphinx/test/data/librivox/transcription
$(DEMO_SPEECH):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq pocketsphinx-testdata >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq pocketsphinx-testdata >/dev/null)); \
	else echo "Install Debian's pocketsphinx-testdata for the built-in demo speech (or run plc demo --input FILE)"; fi

# Debian's Chromium and its driver, for the browser test of `plc demo serve` (tests/test_browser.py).
CHROMEDRIVER := /usr/bin/chromedriver
$(CHROMEDRIVER):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq chromium chromium-driver >/dev/null)); \
	else echo "Install Debian's chromium and chromium-driver for the browser test (it skips without them)"; fi

setup: $(STAMP) $(DEMO_SPEECH) $(CHROMEDRIVER)

demo: setup
	$(BIN)/plc demo call --compare --out out/call

test: setup
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)
