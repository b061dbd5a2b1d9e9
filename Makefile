# The two set-up commands of the README. CI (.ci/run) runs exactly these.
.PHONY: install test

# Notebooks run with nbs/ as their working folder, so a relative JAXLEARN_DATA (e.g. ../shared/data)
# is made absolute here, relative to the folder make runs in.
ifdef JAXLEARN_DATA
override JAXLEARN_DATA := $(abspath $(JAXLEARN_DATA))
export JAXLEARN_DATA
endif

install:
	pip install -e ".[dev]"
	@# Chromium opens the built docs site in tests/test_docs.py.
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }
	@# KaTeX (package.json, pinned in package-lock.json) renders the maths of the offline docs site (tests/build_docs.py
	@# copies it into the site); npm, with Node.js, comes from apt when missing.
	@command -v npm >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq npm; }
	npm ci --no-audit --no-fund

# Every notebook top to bottom (8 simulated CPU devices for the sharding cells), then tests/. Two notebooks at a
# time: most of a notebook's time is XLA compiling, on one core, so two workers use both cores of a small machine.
test:
	XLA_FLAGS=--xla_force_host_platform_device_count=8 nbdev-test --n-workers 2 --do-print --timing
	@# tests/ in two processes: the docs site (build, then Chromium) in one, everything else in the other (--dist loadfile
	@# keeps each file's session fixtures, such as the built site, in one process).
	python -m pytest tests -q -n 2 --dist loadfile
