# Two commands: `make run` (set up and launch the app) and `make test` (set up and run every test).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test setup setup-test browser espeak epubcheck pandoc tesseract calibre bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# Torch goes first so that qwen-tts resolves against the pinned build.
$(VENV)/.app-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install torch==2.9.1 torchaudio==2.9.1
	$(BIN)/pip install -r requirements.txt
	touch $@

$(VENV)/.test-installed: requirements-test.txt $(VENV)/.app-installed
	$(BIN)/pip install -r requirements-test.txt
	touch $@

setup: $(VENV)/.app-installed tesseract

setup-test: $(VENV)/.test-installed browser espeak epubcheck pandoc tesseract calibre

# Browser tests drive the system Chromium through Playwright.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "Installing Debian's chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium); }

# Voice tests make their clips with espeak-ng (synthetic speech, never recordings of people).
espeak:
	@command -v espeak-ng >/dev/null 2>&1 || \
	  { echo "Installing Debian's espeak-ng for the voice tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng) || \
	    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng); }

# Read-along tests validate their EPUBs with Debian's epubcheck (run as java -jar, no binfmt needed).
epubcheck:
	@test -f /usr/share/java/epubcheck.jar || \
	  { echo "Installing Debian's epubcheck for the read-along tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=900 epubcheck) || \
	    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=900 epubcheck); }

# Scanned PDF pages are read by OCR with Tesseract and its English pack (README: other languages).
tesseract:
	@{ command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -qx eng; } || \
	  { echo "Installing Debian's tesseract-ocr and its English pack for reading scanned pages"; \
	    (apt-get -o DPkg::Lock::Timeout=900 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq tesseract-ocr tesseract-ocr-eng) || \
	    (sudo apt-get -o DPkg::Lock::Timeout=900 update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq tesseract-ocr tesseract-ocr-eng); }

# Format tests make their docx, odt, fb2, html and rtf books with pandoc.
pandoc:
	@command -v pandoc >/dev/null 2>&1 || \
	  { echo "Installing Debian's pandoc for the book format tests"; \
	    (apt-get -o DPkg::Lock::Timeout=900 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq pandoc) || \
	    (sudo apt-get -o DPkg::Lock::Timeout=900 update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq pandoc); }

# Calibre's ebook-convert makes the mobi/azw3 test books and reads the formats we have no reader for.
calibre:
	@command -v ebook-convert >/dev/null 2>&1 || \
	  { echo "Installing Debian's calibre (ebook-convert) for Kindle books and other formats"; \
	    (apt-get -o DPkg::Lock::Timeout=900 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends calibre) || \
	    (sudo apt-get -o DPkg::Lock::Timeout=900 update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends calibre); }

run: setup
	$(BIN)/python app.py $(ARGS)

# The suite runs on TEST_JOBS processes (pytest-xdist), one test file per process at a time, so a
# module's app server and fixtures are made once; the tiny checkpoints are built once for all. Much of
# the suite waits (on Ray, app servers, a browser, subprocesses), so four processes keep two cores busy;
# the longest modules start first (tests/conftest.py).
TEST_JOBS ?= 4
test: setup-test
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder $(ARGS)

bench: setup
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV)
