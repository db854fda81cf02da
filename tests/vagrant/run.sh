#!/usr/bin/env bash
# `make test-vagrant`: Vagrant VMs up, vmstation deploy-debian (and deploy-rke2) twice, testinfra checks,
# VMs destroyed (always). Exit non-zero on any failure. Timings and summaries go to tests/vagrant/last-run.log.
#
# Mode: VMSTATION_VAGRANT_LOCAL=1 uses the locally built Debian box on libvirt with software emulation
# (machines that cannot download boxes); =0 uses public boxes. Unset: public when debian/bookworm64 is
# present or can be added, else local. See tests/vagrant/README.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
PY=${PY:-"$REPO/.venv/bin/python"}
LOG="$REPO/tests/vagrant/last-run.log"
WORKDIR=$(mktemp -d /var/tmp/vmstation-vagrant-XXXXXX)
export VAGRANT_DOTFILE_PATH="$WORKDIR/.vagrant"   # keep Vagrant's machine state out of the tree
NETWORKS_DEFINED=()
DAEMONS_STARTED=()
STARTED=$(date +%s)

main() {
  trap cleanup EXIT
  : > "$WORKDIR/timings"
  choose_mode
  local provider_args=()
  if [ "$VMSTATION_VAGRANT_LOCAL" = 1 ]; then
    timed "libvirt daemons" start_libvirt
    timed "libvirt networks" define_networks
    timed "local box (build once, cached)" build_local_box
    provider_args=(--provider=libvirt)
  fi
  timed "vagrant up" vagrant up --no-parallel "${provider_args[@]}"
  local driver_args=("$WORKDIR")
  [ "$VMSTATION_VAGRANT_LOCAL" = 1 ] && driver_args+=(--local)
  timed "deploy and verify" "$PY" -m tests.vagrant.deploy_vms "${driver_args[@]}" 2>&1 | tee "$WORKDIR/deploy.log"
}

choose_mode() {
  if [ -z "${VMSTATION_VAGRANT_LOCAL:-}" ]; then
    VMSTATION_VAGRANT_LOCAL=1
    if vagrant box list | grep -q '^debian/bookworm64 ' ||
       vagrant box add --provider "${VAGRANT_DEFAULT_PROVIDER:-virtualbox}" debian/bookworm64; then
      VMSTATION_VAGRANT_LOCAL=0
    fi
  fi
  export VMSTATION_VAGRANT_LOCAL
  echo "mode: $([ "$VMSTATION_VAGRANT_LOCAL" = 1 ] && echo "local box, libvirt, software emulation" || echo "public boxes")"
}

# No systemd on some machines (containers): start the daemons by hand when libvirt does not answer.
start_libvirt() {
  virsh -c qemu:///system version >/dev/null 2>&1 && return 0
  if ! pgrep -x virtlogd >/dev/null; then
    virtlogd -d --pid-file "$WORKDIR/virtlogd.pid"
    DAEMONS_STARTED=("$WORKDIR/virtlogd.pid" "${DAEMONS_STARTED[@]}")
  fi
  if ! pgrep -x libvirtd >/dev/null; then
    start_libvirtd_without_kvm
    DAEMONS_STARTED=("$WORKDIR/libvirtd.pid" "${DAEMONS_STARTED[@]}")
  fi
  for _ in $(seq 50); do virsh -c qemu:///system version >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "libvirtd does not answer" >&2
  return 1
}

# Where /dev/kvm opens for qemu's capability probe but not for the qemu user (seen here: a paravirtual
# /dev/kvm owned by another group), libvirt finds its cached capabilities stale on every call and probes
# qemu again, about 4 s per call: `vagrant up` crawls. The VMs use software emulation anyway, so libvirtd
# gets a mount namespace of its own where /dev/kvm is an empty file no one can use.
start_libvirtd_without_kvm() {
  if [ ! -e /dev/kvm ]; then
    libvirtd -d --pid-file "$WORKDIR/libvirtd.pid"
    return
  fi
  install -m 000 /dev/null "$WORKDIR/no-kvm"
  unshare --mount --propagation private sh -c 'mount --bind "$1" /dev/kvm && exec libvirtd -d --pid-file "$2"' \
    sh "$WORKDIR/no-kvm" "$WORKDIR/libvirtd.pid"
}

# Isolated networks (no <forward>: no route out), DHCP only on the management network, no DNS.
define_networks() {
  define_network vmstation-mgmt vmsvag0 10.77.31.1 "<dhcp><range start='10.77.31.100' end='10.77.31.200'/></dhcp>"
  define_network vmstation-private vmsvag1 10.77.30.1 ""
}

define_network() {
  local name=$1 bridge=$2 address=$3 dhcp=$4
  if virsh -q net-info "$name" >/dev/null 2>&1; then
    echo "libvirt network $name exists (left by an earlier run?): remove it with virsh net-destroy/net-undefine" >&2
    return 1
  fi
  cat > "$WORKDIR/$name.xml" <<EOF
<network>
  <name>$name</name>
  <bridge name='$bridge' stp='on' delay='0'/>
  <dns enable='no'/>
  <ip address='$address' netmask='255.255.255.0'>$dhcp</ip>
</network>
EOF
  virsh -q net-define "$WORKDIR/$name.xml" >/dev/null
  NETWORKS_DEFINED+=("$name")
  virsh -q net-start "$name" >/dev/null
}

build_local_box() {
  VMSTATION_VAGRANT_BOX_DIR=$("$PY" -m tests.vagrant.build_box)
  export VMSTATION_VAGRANT_BOX_DIR
  echo "box: $VMSTATION_VAGRANT_BOX_DIR"
}

timed() {
  local label=$1 start rc=0
  shift
  start=$(date +%s)
  "$@" || rc=$?
  echo "[time] $label: $(( $(date +%s) - start )) s (exit $rc)" | tee -a "$WORKDIR/timings"
  return $rc
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT
  timed "vagrant destroy" vagrant destroy -f
  for name in "${NETWORKS_DEFINED[@]}"; do   # vagrant destroy may have removed them already
    if virsh -q net-info "$name" >/dev/null 2>&1; then
      virsh -q net-destroy "$name" >/dev/null 2>&1
      virsh -q net-undefine "$name" >/dev/null
    fi
  done
  for pidfile in "${DAEMONS_STARTED[@]}"; do   # stopped in reverse order of starting: libvirtd first
    kill "$(cat "$pidfile")"
  done
  write_log "$rc"
  rm -rf "$WORKDIR"
  echo "test-vagrant: $([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)"), $(( $(date +%s) - STARTED )) s"
  exit "$rc"
}

# The essential lines only: when, where, timings, the deploy summaries and the checks' result.
write_log() {
  {
    echo "# make test-vagrant, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB"
    echo "# mode: VMSTATION_VAGRANT_LOCAL=$VMSTATION_VAGRANT_LOCAL"
    cat "$WORKDIR/timings"
    [ -f "$WORKDIR/deploy.log" ] && sed "s/^\[time\] /[time]   /" "$WORKDIR/deploy.log"
    echo "result: exit $1, $(( $(date +%s) - STARTED )) s in all"
  } > "$LOG"
}

main "$@"
