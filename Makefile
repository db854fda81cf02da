# vmstation: `make test` sets everything up from a fresh clone and runs the whole suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := openssh-server iproute2 sudo systemd-container mmdebstrap prometheus containerd systemd

.PHONY: test unit deps venv test-vagrant demo demo-down bench lint

test: deps venv
	$(PY) -m pytest -q

unit: venv
	$(PY) -m pytest -q tests/unit

venv: $(VENV)/.installed
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The real test hosts need a few Debian packages (root only; skipped tests say so otherwise).
# prometheus and containerd only lend their tools (promtool, containerd config dump) to the config
# tests; policy-rc.d keeps their services from starting while they install.
deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	    rc=$$?; rm -f /usr/sbin/policy-rc.d; [ $$rc = 0 ] || exit $$rc; \
	  fi; \
	else echo "not root: box and sshd-host tests will be skipped"; fi

test-vagrant: deps venv
	bash tests/vagrant/run.sh

demo: deps venv
	$(PY) -m vmstation.testing.demo

# The peers (pyinfra, Fabric, ansible-core) go into virtualenvs of their own: see bench/tools.py.
bench: deps venv
	$(PY) -m bench.run

lint: venv
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check --isolated --select E,F,W,B --line-length 120 --target-version py311 \
	  --per-file-ignores 'tests/unit/test_config_checks.py:E501' vmstation tests bench fabfile.py

demo-down: venv
	$(PY) -m vmstation.testing.demo --down
