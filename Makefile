# vmstation: `make test` sets everything up from a fresh clone and runs the whole suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := openssh-server iproute2 procps sudo systemd-container mmdebstrap prometheus prometheus-node-exporter containerd systemd

.PHONY: test unit deps venv test-vagrant check-vagrant demo demo-down bench lint transcript

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
# prometheus and containerd lend their tools (promtool, containerd config dump) to the config tests; prometheus and
# prometheus-node-exporter also run on loopback for the dashboard tests (their services are not started).
deps:
	bash tests/install-packages.sh $(APT_PACKAGES)

# Without Recommends (libguestfs, NFS server, GUI: minutes of installing for nothing used here); dnsmasq-base
# is the one Recommends needed (DHCP on the libvirt management network). About 20 s on this machine.
VAGRANT_PACKAGES := vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 qemu-utils e2fsprogs dnsmasq-base

# Full VMs: public boxes on a workstation; VMSTATION_VAGRANT_LOCAL=1 builds a local box (see tests/vagrant/README.md).
test-vagrant: deps venv
	bash tests/install-packages.sh $(VAGRANT_PACKAGES)
	bash tests/vagrant/run.sh

# The cheap check of the same path, for CI: box built and added from an empty cache, `vagrant validate` in
# both modes, one VM started by the same libvirt set-up and reached over SSH, all removed again.
check-vagrant: deps venv
	bash tests/install-packages.sh $(VAGRANT_PACKAGES)
	bash tests/vagrant/run.sh --check

demo: deps venv
	$(PY) -m vmstation.testing.demo

# The peers (pyinfra, Fabric, ansible-core) go into virtualenvs of their own: see bench/tools.py.
bench: deps venv
	$(PY) -m bench.run

lint: venv
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check --isolated --select E,F,W,B --line-length 120 --target-version py311 \
	  --per-file-ignores 'tests/unit/test_config_checks.py:E501' vmstation tests bench fabfile.py

# The README's first-run transcript, recorded against the demo boxes (root; rewrites README.md's transcript part).
transcript: deps venv
	$(PY) -m vmstation.testing.transcript

demo-down: venv
	$(PY) -m vmstation.testing.demo --down
