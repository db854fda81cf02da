#!/bin/sh
# STAND-IN for RKE2's install.sh (tests/standins/README.md): proves vmstation's control flow, never that RKE2
# works. Run as the real one is, air-gapped: INSTALL_RKE2_VERSION, INSTALL_RKE2_ARTIFACT_PATH, INSTALL_RKE2_METHOD,
# INSTALL_RKE2_TYPE; each run is recorded in /var/lib/vmstation-standin/calls ("install VERSION TYPE METHOD").
# A release "tarball" that is a real tar.gz (test_daytwo_rke2.py: bin/rke2 and the units, as RKE2's tarball lays
# them out) is unpacked into /usr/local, as the tar method does. Any other (test_standins.py: a line of text)
# makes it install three more stand-ins: /usr/local/bin/rke2 (its --version, and a "server" that writes a
# kubeconfig and stays up), the rke2-server unit, and RKE2's kubectl (node Ready, rollouts done once the
# manifests are there).
set -eu
cue_dir=/etc/vmstation-standin
state=/var/lib/vmstation-standin
case "$(cat "$cue_dir/install" 2>/dev/null || true)" in
  fail) echo "stand-in rke2 install.sh: fails on cue" >&2; exit 1 ;;
  hang) echo "stand-in rke2 install.sh: hangs on cue" >&2; exec sleep 3600 ;;
esac
: "${INSTALL_RKE2_VERSION:?}" "${INSTALL_RKE2_ARTIFACT_PATH:?}"
install -d -m 0700 "$state"
echo "install $INSTALL_RKE2_VERSION ${INSTALL_RKE2_TYPE:-server} ${INSTALL_RKE2_METHOD:-}" >> "$state/calls"
tarball="$INSTALL_RKE2_ARTIFACT_PATH/rke2.linux-amd64.tar.gz"
if tar -tzf "$tarball" >/dev/null 2>&1; then
  tar -xzf "$tarball" -C /usr/local
  (umask 077; echo "$INSTALL_RKE2_VERSION" > "$state/rke2-version")
  systemctl daemon-reload
  echo "stand-in rke2 $INSTALL_RKE2_VERSION unpacked into /usr/local"
  exit 0
fi
grep -q "stand-in" "$tarball"   # the release "tarball" is a stand-in too

install -d -m 0755 /usr/local/bin /var/lib/rancher/rke2/bin /etc/rancher/rke2
cat > /usr/local/bin/rke2 <<EOF
#!/bin/sh
# STAND-IN for rke2 (tests/standins/README.md)
case "\${1:-}" in
  --version) echo "rke2 version $INSTALL_RKE2_VERSION (stand-in)" ;;
  server)
    umask 077
    printf 'apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\n' \
      > /etc/rancher/rke2/rke2.yaml
    exec sleep infinity ;;
  *) echo "stand-in rke2: '\$*' is not scripted" >&2; exit 2 ;;
esac
EOF
cat > /var/lib/rancher/rke2/bin/kubectl <<'EOF'
#!/bin/sh
# STAND-IN for RKE2's kubectl (tests/standins/README.md)
[ -e /etc/rancher/rke2/rke2.yaml ] || { echo "stand-in kubectl: no rke2.yaml: no cluster" >&2; exit 1; }
case " $* " in
  *" get node "*"-o jsonpath="*) echo True ;;
  *" get nodes "*) echo "$(uname -n) Ready control-plane,etcd,master 1m v1.29.15+rke2r1" ;;
  *" rollout status deployment/prometheus "*)
    ls /var/lib/rancher/rke2/server/manifests/vmstation-monitoring-* >/dev/null 2>&1 ;;
  *" get pods "*) echo "prometheus-0 1/1 Running 0 1m" ;;
  *) echo "stand-in kubectl: '$*' is not scripted" >&2; exit 2 ;;
esac
EOF
cat > /etc/systemd/system/rke2-server.service <<'EOF'
# STAND-IN unit for rke2-server (tests/standins/README.md)
[Unit]
Description=stand-in for rke2-server (tests only)
[Service]
ExecStart=/usr/local/bin/rke2 server
[Install]
WantedBy=multi-user.target
EOF
chmod 0755 /usr/local/bin/rke2 /var/lib/rancher/rke2/bin/kubectl
systemctl daemon-reload
echo "stand-in rke2 $INSTALL_RKE2_VERSION installed"
