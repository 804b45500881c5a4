# The two commands of the README: `make demo` (main job on a built-in default) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[eval,train,dev]"
	touch $(STAMP)

# Demo speech with transcripts from a registry package (Debian's LibriVox test clips).
DEMO_SPEECH := /usr/share/pocketsphinx/test/data/librivox/transcription
$(DEMO_SPEECH):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq pocketsphinx-testdata >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq pocketsphinx-testdata >/dev/null)); \
	else echo "Install Debian's pocketsphinx-testdata for the built-in demo speech (or run plc demo --input FILE)"; fi

setup: $(STAMP) $(DEMO_SPEECH)

demo: setup
	$(BIN)/plc demo call --compare --out out/call

test: $(STAMP)
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)
