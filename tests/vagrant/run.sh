#!/usr/bin/env bash
# `make test-vagrant` (run.sh): Vagrant VMs up, vmstation deploy-debian (and deploy-rke2) twice, testinfra checks.
# `make check-vagrant` (run.sh --check; CI): the cheap part that catches a broken set-up: the local box built and
# added from an empty cache (a box cache and Vagrant home of its own), `vagrant validate` in both modes, one VM
# started by the same libvirt set-up and reached over SSH.
# Both remove everything they made, also on failure: VMs, the libvirt storage volumes, pools and networks they
# created, the libvirt daemons they started. Exit non-zero on any failure. The full run writes its record
# (commit, date, timings, deploy summaries) to tests/vagrant/last-run.log.
#
# Mode: VMSTATION_VAGRANT_LOCAL=1 uses the locally built Debian box on libvirt with software emulation
# (machines that cannot download boxes); =0 uses public boxes. Unset: public when debian/bookworm64 is
# present or can be added, else local. --check always uses the local box. See tests/vagrant/README.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
PY=${PY:-"$REPO/.venv/bin/python"}
LOG="$REPO/tests/vagrant/last-run.log"
NODES="$REPO/tests/vagrant/nodes.json"
CHECK=0
[ "${1:-}" = --check ] && CHECK=1
WORKDIR=$(mktemp -d /var/tmp/vmstation-vagrant-XXXXXX)
chmod 711 "$WORKDIR"   # qemu runs as libvirt-qemu and must reach the kernel of a box cached under it (--check)
export VAGRANT_DOTFILE_PATH="$WORKDIR/.vagrant"   # keep Vagrant's machine state out of the tree
export VAGRANT_CHECKPOINT_DISABLE=1               # no version check against hashicorp.com
export LIBVIRT_DEFAULT_URI=qemu:///system         # the connection vagrant-libvirt uses
NETWORKS_DEFINED=()
DAEMONS_STARTED=()
STORAGE_BEFORE=""    # "pool" and "pool/volume" lines libvirt had before this run (may be none at all)
STORAGE_TRACKED=0   # 1 once STORAGE_BEFORE is known
VMS_STARTED=0
STARTED=$(date +%s)

main() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  : > "$WORKDIR/timings"
  if [ "$CHECK" = 1 ]; then
    check
    return
  fi
  choose_mode
  local provider_args=()
  if [ "$VMSTATION_VAGRANT_LOCAL" = 1 ]; then
    prepare_local
    provider_args=(--provider=libvirt)
  fi
  VMS_STARTED=1
  timed "vagrant up" without_progress vagrant up --no-parallel "${provider_args[@]}"
  local driver_args=("$WORKDIR")
  [ "$VMSTATION_VAGRANT_LOCAL" = 1 ] && driver_args+=(--local)
  timed "deploy and verify" deploy_and_verify "${driver_args[@]}"
}

deploy_and_verify() {
  "$PY" -m tests.vagrant.deploy_vms "$@" 2>&1 | tee "$WORKDIR/deploy.log"
}

# What `make check-vagrant` proves in a few minutes: the two failures of issue 18 (a box that could only be
# added where it already was; libvirt domains that could not start) cannot come back unnoticed.
check() {
  if [ "$(id -u)" != 0 ]; then   # like the suite's real test hosts: skipped, and said so
    echo "check-vagrant: skipped, not root (libvirtd, its networks and the box build need root)"
    return 0
  fi
  export VMSTATION_VAGRANT_LOCAL=1
  export VMSTATION_VAGRANT_CACHE="$WORKDIR/box-cache" VAGRANT_HOME="$WORKDIR/vagrant.d"   # empty caches
  timed "vagrant validate (public boxes, virtualbox)" env VMSTATION_VAGRANT_LOCAL=0 vagrant validate
  timed "vagrant validate (public boxes, libvirt)" \
    env VMSTATION_VAGRANT_LOCAL=0 VAGRANT_DEFAULT_PROVIDER=libvirt vagrant validate
  prepare_local
  timed "vagrant validate (local box)" vagrant validate
  VMS_STARTED=1
  timed "vagrant up masternode" without_progress vagrant up masternode --provider=libvirt
  vagrant ssh-config masternode
  timed "inventory and vmstation's SSH to the VM" "$PY" -m tests.vagrant.deploy_vms "$WORKDIR" --local --connect-only
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

prepare_local() {
  timed "libvirt daemons" start_libvirt
  STORAGE_BEFORE=$(libvirt_storage)
  STORAGE_TRACKED=1
  timed "libvirt networks" define_networks
  timed "local box (built and added once, cached)" build_local_box
}

# No systemd on some machines (containers): start the daemons by hand when libvirt does not answer.
start_libvirt() {
  virsh version >/dev/null 2>&1 && return 0
  if ! pgrep -x virtlogd >/dev/null; then
    virtlogd -d --pid-file "$WORKDIR/virtlogd.pid" || return 1
    DAEMONS_STARTED=("$WORKDIR/virtlogd.pid" "${DAEMONS_STARTED[@]}")
  fi
  if ! pgrep -x libvirtd >/dev/null; then
    start_libvirtd_without_kvm || return 1
    DAEMONS_STARTED=("$WORKDIR/libvirtd.pid" "${DAEMONS_STARTED[@]}")
  fi
  for _ in $(seq 50); do virsh version >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "libvirtd does not answer" >&2
  return 1
}

# Where /dev/kvm opens for qemu's capability probe but not for the qemu user (seen here: a paravirtual
# /dev/kvm, mode 0600 root), libvirt finds its cached capabilities stale on every call and probes qemu
# again, about 4 s per call: `vagrant up` crawls. The VMs use software emulation anyway, so libvirtd gets a
# mount namespace of its own where /dev/kvm is an empty file no one can use. Its qemu.conf there turns off
# the per-domain /dev namespace (`namespaces = [ ]`): libvirt would copy /dev/kvm into it and cannot move a
# bind-mounted file there ("Unable to move ... mount to /dev/kvm: Invalid argument", no domain starts).
start_libvirtd_without_kvm() {
  if [ ! -e /dev/kvm ]; then
    libvirtd -d --pid-file "$WORKDIR/libvirtd.pid"
    return
  fi
  install -m 000 /dev/null "$WORKDIR/no-kvm"
  printf '# libvirtd of tests/vagrant/run.sh: no per-domain /dev namespace\nnamespaces = [ ]\n' > "$WORKDIR/qemu.conf"
  unshare --mount --propagation private sh -c \
    'mount --bind "$1" /dev/kvm && mount --bind "$2" /etc/libvirt/qemu.conf && exec libvirtd -d --pid-file "$3"' \
    sh "$WORKDIR/no-kvm" "$WORKDIR/qemu.conf" "$WORKDIR/libvirtd.pid"
}

# Isolated networks (no <forward>: no route out), DHCP only on the management network, no DNS. Subnets from
# nodes.json (10.77.40.0/24 private, 10.77.41.0/24 management): no other test or benchmark uses them.
define_networks() {
  local private_gw mgmt_gw mgmt_first mgmt_last
  read -r private_gw mgmt_gw mgmt_first mgmt_last < <("$PY" -c '
import ipaddress, json, sys
nodes = json.load(open(sys.argv[1]))
private, mgmt = (ipaddress.ip_network(nodes[key]) for key in ("private_network", "management_network"))
print(private[1], mgmt[1], mgmt[100], mgmt[200])' "$NODES")
  define_network vmstation-mgmt vmsvag0 "$mgmt_gw" "<dhcp><range start='$mgmt_first' end='$mgmt_last'/></dhcp>" ||
    return 1
  define_network vmstation-private vmsvag1 "$private_gw" ""
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
  virsh -q net-define "$WORKDIR/$name.xml" >/dev/null || return 1
  NETWORKS_DEFINED+=("$name")
  virsh -q net-start "$name" >/dev/null
}

build_local_box() {
  VMSTATION_VAGRANT_BOX_DIR=$("$PY" -m tests.vagrant.build_box) || return 1
  export VMSTATION_VAGRANT_BOX_DIR
  echo "box: $VMSTATION_VAGRANT_BOX_DIR"
}

# Every storage pool ("pool") and volume ("pool/volume") libvirt knows, one a line.
libvirt_storage() {
  local pool
  for pool in $(virsh -q pool-list --all --name); do
    echo "$pool"
    virsh -q vol-list "$pool" 2>/dev/null | awk -v pool="$pool" 'NF { print pool "/" $1 }'
  done
}

# The volumes (VM disks, the box image vagrant-libvirt uploads) and pools this run created. Only volumes
# named like Vagrant's (our "vmstation-" prefix, a box image): a libvirt shared with other work keeps its own.
remove_new_storage() {
  local item
  comm -13 <(echo "$STORAGE_BEFORE" | sort) <(libvirt_storage | sort) > "$WORKDIR/storage-new"
  while read -r item; do
    case "$item" in
      */vmstation-*|*_vagrant_box_image_*) echo "removing volume $item"; virsh -q vol-delete --pool "${item%%/*}" "${item#*/}" ;;
    esac
  done < <(grep / "$WORKDIR/storage-new")
  while read -r item; do
    echo "removing storage pool $item"
    virsh -q pool-destroy "$item" >/dev/null 2>&1
    virsh -q pool-undefine "$item" >/dev/null
  done < <(grep -v / "$WORKDIR/storage-new")
}

# vagrant-libvirt draws its box upload's progress bar with carriage returns: thousands of lines in a log.
without_progress() {
  "$@" 2>&1 | tr '\r' '\n' | grep -av 'Progress: '
}

# Steps run as `"$@" || rc=$?`, where bash ignores `set -e` inside them: each step returns its own failures.
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
  trap - EXIT INT TERM
  [ "$VMS_STARTED" = 1 ] && timed "vagrant destroy" vagrant destroy -f
  [ "$STORAGE_TRACKED" = 1 ] && remove_new_storage
  for name in "${NETWORKS_DEFINED[@]}"; do   # vagrant destroy may have removed them already
    if virsh -q net-info "$name" >/dev/null 2>&1; then
      virsh -q net-destroy "$name" >/dev/null 2>&1
      virsh -q net-undefine "$name" >/dev/null
    fi
  done
  for pidfile in "${DAEMONS_STARTED[@]}"; do   # stopped in reverse order of starting: libvirtd first
    stop_daemon "$pidfile"
  done
  [ "$CHECK" = 1 ] || write_log "$rc"
  rm -rf "$WORKDIR"
  echo "$([ "$CHECK" = 1 ] && echo check-vagrant || echo test-vagrant):" \
    "$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)"), $(( $(date +%s) - STARTED )) s"
  exit "$rc"
}

stop_daemon() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  echo "$(basename "$1" .pid) (pid $pid) did not stop within 30 s" >&2
}

# The record of the run: commit, when, where, timings, the deploy summaries and the checks' result.
write_log() {
  local commit
  commit=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo "unknown (not a git checkout)")
  if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no -- . ':!tests/vagrant/last-run.log' 2>/dev/null)" ]
  then commit="$commit with uncommitted changes"; fi
  {
    echo "# make test-vagrant, $(date -u -d "@$STARTED" +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB"
    echo "# commit: $commit"
    echo "# mode: VMSTATION_VAGRANT_LOCAL=${VMSTATION_VAGRANT_LOCAL:-unset}"
    cat "$WORKDIR/timings"
    [ -f "$WORKDIR/deploy.log" ] && sed "s/^\[time\] /[time]   /" "$WORKDIR/deploy.log"
    echo "result: exit $1, $(( $(date +%s) - STARTED )) s in all"
  } > "$LOG"
}

# One line: bash reads a script as it runs it, and an edit made meanwhile must not be read after main.
main "$@"; exit
