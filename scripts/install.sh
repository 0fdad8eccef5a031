#!/bin/sh
# lite-apiserver installer: a Kubernetes API proxy with an offline cache for edge nodes.
#
#   curl -fsSL https://github.com/lite-apiserver/lite-apiserver/releases/latest/download/install.sh | sh -s -- [options]
#   sh install.sh --binary ./lite-apiserver-x86_64-unknown-linux-gnu      (offline)
#
# Installs /usr/local/bin/lite-apiserver, /etc/lite-apiserver/config.yaml (only when absent)
# and /etc/systemd/system/lite-apiserver.service, then enables and starts the service.
# Safe to run again: unchanged files are left alone and reported "up to date".
#
# By default it downloads from the project's GitHub releases (RELEASES below; the release workflow
# stamps REPO and DEFAULT_VERSION into the copy it attaches to a release, see
# scripts/release-assets.sh).
#
# Environment: LITE_APISERVER_BASE_URL (same as --base-url); LITE_APISERVER_RELEASES_URL replaces
# the GitHub releases location (tests, mirrors laid out like it); LITE_APISERVER_ARCH overrides
# `uname -m` (for tests and cross-installs into --root); LITE_APISERVER_SYSTEMCTL names the
# systemctl command and, for tests only, lets a --root install run it.
set -eu

NAME=lite-apiserver
# The project's repository; its releases hold lite-apiserver-<triple>, SHA256SUMS and install.sh.
REPO=lite-apiserver/lite-apiserver
# Empty: the latest release. A release's own install.sh has its tag here.
DEFAULT_VERSION=
RELEASES=${LITE_APISERVER_RELEASES_URL:-https://github.com/$REPO/releases}
BASE_URL=${LITE_APISERVER_BASE_URL:-}
VERSION=
BINARY=
ROOT=/
DRY_RUN=0
NO_START=0
UNINSTALL=0
PURGE=0
UPSTREAM=

usage() {
  cat <<'EOF'
Usage: install.sh [options]

Options:
  --base-url URL        a mirror (env LITE_APISERVER_BASE_URL): downloads
                        URL/lite-apiserver-<arch-triple> and URL/SHA256SUMS
                        (default: the project's GitHub releases, latest release)
  --version V           install release V (a tag such as v1.0.0): from GitHub
                        releases/download/V/, or from URL/V/ with --base-url
  --binary PATH         install this local file instead of downloading (offline install)
  --kube-apiserver-url URL
                        the cloud kube-apiserver, written into a NEW config.yaml
  --root DIR            prefix for every path written (default /); implies --no-start
  --dry-run             print every action, change nothing
  --no-start            do not run systemctl daemon-reload / enable / start
  --uninstall           remove the binary, the unit and /etc/lite-apiserver (keeps the
                        cache in /var/lib/lite-apiserver unless --purge)
  --purge               with --uninstall: also remove /var/lib/lite-apiserver
  -h, --help            this help

Supported machines: x86_64/amd64 and aarch64/arm64 Linux.
EOF
}

say() { printf '%s: %s\n' "$NAME install" "$*"; }
die() {
  printf '%s: error: %s\n' "$NAME install" "$*" >&2
  exit 1
}

need_value() {
  if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    --base-url) need_value "$@"; BASE_URL=$2; shift 2 ;;
    --base-url=*) BASE_URL=${1#*=}; shift ;;
    --version) need_value "$@"; VERSION=$2; shift 2 ;;
    --version=*) VERSION=${1#*=}; shift ;;
    --binary) need_value "$@"; BINARY=$2; shift 2 ;;
    --binary=*) BINARY=${1#*=}; shift ;;
    --kube-apiserver-url) need_value "$@"; UPSTREAM=$2; shift 2 ;;
    --kube-apiserver-url=*) UPSTREAM=${1#*=}; shift ;;
    --root) need_value "$@"; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#*=}; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --no-start) NO_START=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge only makes sense with --uninstall"
case "$ROOT" in
  /*) ;;
  *) die "--root must be an absolute path, got '$ROOT'" ;;
esac
ROOT=${ROOT%/}
SYSTEMCTL=${LITE_APISERVER_SYSTEMCTL:-systemctl}
# systemctl acts on the running system: never from an alternate root (unless a test stubs it).
[ -z "$ROOT" ] || [ -n "${LITE_APISERVER_SYSTEMCTL:-}" ] || NO_START=1

BIN_PATH=/usr/local/bin/$NAME
CONF_DIR=/etc/$NAME
CONF_PATH=$CONF_DIR/config.yaml
TLS_CONFIG_PATH=$CONF_DIR/tls-config.json
UNIT_PATH=/etc/systemd/system/$NAME.service
STATE_DIR=/var/lib/$NAME

# run CMD...: runs a command, or prints it under --dry-run.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    say "[dry-run] $*"
  else
    "$@"
  fi
}

TMP=
cleanup() { [ -z "$TMP" ] || rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
TMP=$(mktemp -d "${TMPDIR:-/tmp}/$NAME-install.XXXXXX") || die "cannot create a temporary directory"

# install_file SRC DEST MODE LABEL: atomically replaces DEST (temp file in the same directory +
# rename) unless it already has the same content. Prints what it did.
install_file() {
  src=$1 dest=$2 mode=$3 label=$4
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    run chmod "$mode" "$dest"
    say "$label $dest: up to date"
    CHANGED_LAST=0
    return 0
  fi
  verb=installed
  [ -e "$dest" ] && verb=updated
  if [ "$DRY_RUN" = 1 ]; then
    say "[dry-run] install -m $mode $src $dest ($label would be $verb)"
  else
    mkdir -p "$(dirname "$dest")" || die "cannot create $(dirname "$dest")"
    tmp_dest="$(dirname "$dest")/.$(basename "$dest").tmp.$$"
    cp "$src" "$tmp_dest" || die "cannot write $tmp_dest"
    chmod "$mode" "$tmp_dest"
    mv -f "$tmp_dest" "$dest" || die "cannot move $tmp_dest to $dest"
    say "$label $dest: $verb"
  fi
  CHANGED_LAST=1
}

detect_triple() {
  machine=${LITE_APISERVER_ARCH:-$(uname -m)}
  case "$machine" in
    x86_64 | amd64) echo x86_64-unknown-linux-gnu ;;
    aarch64 | arm64) echo aarch64-unknown-linux-gnu ;;
    *) die "unsupported machine architecture '$machine' (supported: x86_64/amd64, aarch64/arm64)" ;;
  esac
}

# fetch URL FILE: downloads with curl or wget; dies with one line on failure.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 -o "$2" "$1" 2>"$TMP/fetch.err" || die "download failed: $1 ($(tail -n 1 "$TMP/fetch.err"))"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1" 2>"$TMP/fetch.err" || die "download failed: $1 (wget: $(tail -n 1 "$TMP/fetch.err"))"
  else
    die "neither curl nor wget is installed: install one, or use --binary PATH"
  fi
}

# obtain_binary: leaves the binary to install in $TMP/$NAME (or prints what it would fetch).
obtain_binary() {
  if [ -n "$BINARY" ]; then
    [ -f "$BINARY" ] || die "--binary $BINARY: no such file"
    cp "$BINARY" "$TMP/$NAME" || die "cannot read $BINARY"
    return 0
  fi
  triple=$(detect_triple)
  asset=$NAME-$triple
  [ -n "$VERSION" ] || VERSION=$DEFAULT_VERSION
  if [ -n "$BASE_URL" ]; then
    url=${BASE_URL%/}
    [ -z "$VERSION" ] || url=$url/$VERSION
  elif [ -n "$VERSION" ]; then
    url=${RELEASES%/}/download/$VERSION
  else
    url=${RELEASES%/}/latest/download
  fi
  if [ "$DRY_RUN" = 1 ]; then
    say "[dry-run] download $url/$asset and $url/SHA256SUMS, verify with sha256sum"
    # Something to compare against the installed binary: without a download, assume a change.
    printf 'dry-run\n' >"$TMP/$NAME"
    return 0
  fi
  command -v sha256sum >/dev/null 2>&1 || die "sha256sum is needed to verify the download (coreutils)"
  say "downloading $url/$asset"
  fetch "$url/$asset" "$TMP/$asset"
  fetch "$url/SHA256SUMS" "$TMP/SHA256SUMS"
  want=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1; exit }' "$TMP/SHA256SUMS")
  [ -n "$want" ] || die "SHA256SUMS has no entry for $asset"
  got=$(sha256sum "$TMP/$asset" | awk '{ print $1 }')
  [ "$want" = "$got" ] || die "checksum mismatch for $asset: expected $want, got $got; nothing installed"
  say "checksum verified ($got)"
  mv "$TMP/$asset" "$TMP/$NAME"
}

write_config() {
  upstream=${UPSTREAM:-https://KUBE-APISERVER-HOST:6443}
  cat <<EOF
# lite-apiserver configuration, read by:
#   lite-apiserver serve --config /etc/lite-apiserver/config.yaml
# Keys are the "serve" flags without "--" (see: lite-apiserver serve --help).
# The installer writes this file only when it is absent: your edits are kept.

# The cloud kube-apiserver. "lite-apiserver kubeconfig redirect" prints the URL your
# kubelet used before it was redirected.
kube-apiserver-url: $upstream

# CA that signed the kube-apiserver's certificate and the client certificates
# (kubelet, kube-proxy...) lite-apiserver accepts.
ca-file: /etc/kubernetes/pki/ca.crt

# lite-apiserver's own serving certificate. Clients keep the cluster CA in their
# kubeconfig, so this certificate must be issued by that CA for 127.0.0.1.
tls-cert-file: /etc/lite-apiserver/pki/lite-apiserver.crt
tls-private-key-file: /etc/lite-apiserver/pki/lite-apiserver.key

# Client identities presented upstream: [{"cert": PATH, "key": PATH}, ...]
# ("lite-apiserver kubeconfig redirect" registers them here).
tls-config-file: /etc/lite-apiserver/tls-config.json

address: 127.0.0.1
port: 51003

# Offline cache: sqlite or file. The systemd unit only allows writes below
# /var/lib/lite-apiserver: keep the cache there (or extend ReadWritePaths).
cache-backend: sqlite
cache-dir: /var/lib/lite-apiserver

# How long to wait for the kube-apiserver before answering from the cache.
backend-timeout: 3s

# log-level: info
# admin-port: 51004      (/healthz, /readyz, /metrics on 127.0.0.1; 0 disables)
EOF
}

write_unit() {
  cat <<'EOF'
# Installed by lite-apiserver's install.sh; overwritten on upgrade.
# Put local changes in: systemctl edit lite-apiserver
[Unit]
Description=lite-apiserver: Kubernetes API proxy with an offline cache for edge nodes
After=network-online.target
Wants=network-online.target
# Up before kubelet, which talks to the apiserver through it. Not Requires=/BindsTo= in
# kubelet: a proxy restart must never stop kubelet (kubelet just retries).
Before=kubelet.service
# Never give up restarting: kubelet depends on us to reach the cluster.
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart=/usr/local/bin/lite-apiserver serve --config /etc/lite-apiserver/config.yaml
# SIGHUP reloads the certificates (serving pair, CA, client pairs).
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=1
LimitNOFILE=65536
UMask=0077
# glibc keeps freed native buffers (large list responses) in its arenas; these hand them back to
# the system: measured RSS after proxying three 5,000-pod lists fell from ~210 MiB to ~150 MiB.
Environment=MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072

# The cache lives in /var/lib/lite-apiserver (0700); the rest of the system is read-only.
StateDirectory=lite-apiserver
StateDirectoryMode=0700
ReadWritePaths=/var/lib/lite-apiserver
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
# Port 51003 needs no capability; certificates are root-owned files read as root.
CapabilityBoundingSet=
AmbientCapabilities=
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
# The binary embeds V8, whose JIT compiler needs writable+executable memory.
MemoryDenyWriteExecute=no
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
# Starting kubelet also starts lite-apiserver (a soft dependency: see Before= above).
WantedBy=kubelet.service
EOF
}

require_root() {
  [ "$DRY_RUN" = 1 ] || [ -n "$ROOT" ] || [ "$(id -u)" = 0 ] ||
    die "must run as root to write under / (try: curl -fsSL <base>/install.sh | sudo sh -s -- ...)"
}

systemctl_do() {
  [ "$DRY_RUN" = 1 ] || command -v "$SYSTEMCTL" >/dev/null 2>&1 || die "systemctl not found: re-run with --no-start and start $NAME yourself"
  run "$SYSTEMCTL" "$@" || die "systemctl $* failed (see: journalctl -u $NAME)"
}

# missing_files: the files config.yaml names (plain "key: value" lines) that do not exist yet.
missing_files() {
  for key in ca-file tls-cert-file tls-private-key-file; do
    f=$(sed -n "s/^$key:[[:space:]]*//p" "$ROOT$CONF_PATH" 2>/dev/null | tail -n 1)
    [ -z "$f" ] || [ -e "$ROOT$f" ] || printf ' %s' "$f"
  done
}

uninstall() {
  require_root
  # A kubeconfig still pointing at lite-apiserver would leave kubelet without an apiserver.
  for b in "$ROOT"/etc/kubernetes/*.lite-apiserver.orig; do
    [ -e "$b" ] || continue
    k=${b%.lite-apiserver.orig}
    die "${k#"$ROOT"} is still redirected to lite-apiserver: run '$NAME kubeconfig restore --kubeconfig ${k#"$ROOT"}' first"
  done
  if [ "$NO_START" = 0 ] && [ -f "$ROOT$UNIT_PATH" ]; then
    systemctl_do disable --now "$NAME.service"
  fi
  for p in "$BIN_PATH" "$UNIT_PATH"; do
    if [ -e "$ROOT$p" ]; then
      run rm -f "$ROOT$p"
      say "removed $ROOT$p"
    fi
  done
  if [ -e "$ROOT$CONF_DIR" ]; then
    run rm -rf "$ROOT$CONF_DIR"
    say "removed $ROOT$CONF_DIR"
  fi
  [ "$NO_START" = 1 ] || systemctl_do daemon-reload
  if [ "$PURGE" = 1 ]; then
    if [ -e "$ROOT$STATE_DIR" ]; then
      run rm -rf "$ROOT$STATE_DIR"
      say "removed $ROOT$STATE_DIR (cache)"
    fi
  elif [ -e "$ROOT$STATE_DIR" ]; then
    say "kept the cache in $ROOT$STATE_DIR (use --purge to remove it)"
  fi
  say "uninstalled"
}

install_all() {
  require_root
  obtain_binary
  install_file "$TMP/$NAME" "$ROOT$BIN_PATH" 0755 binary
  bin_changed=$CHANGED_LAST

  if [ -e "$ROOT$CONF_PATH" ]; then
    say "config $ROOT$CONF_PATH: exists, kept"
  else
    write_config >"$TMP/config.yaml"
    run mkdir -p "$ROOT$CONF_DIR"
    install_file "$TMP/config.yaml" "$ROOT$CONF_PATH" 0644 config
  fi

  # serve refuses a tls-config-file that does not exist: start with no identities.
  if [ ! -e "$ROOT$TLS_CONFIG_PATH" ]; then
    printf '[]\n' >"$TMP/tls-config.json"
    install_file "$TMP/tls-config.json" "$ROOT$TLS_CONFIG_PATH" 0600 tls-config
  fi

  write_unit >"$TMP/unit"
  install_file "$TMP/unit" "$ROOT$UNIT_PATH" 0644 unit
  unit_changed=$CHANGED_LAST

  if [ ! -d "$ROOT$STATE_DIR" ]; then
    run mkdir -p "$ROOT$STATE_DIR"
    run chmod 0700 "$ROOT$STATE_DIR"
  fi

  if [ "$NO_START" = 1 ]; then
    say "not starting the service (--no-start or --root); to start it: systemctl daemon-reload && systemctl enable --now $NAME"
  elif grep -q '^kube-apiserver-url: https://KUBE-APISERVER-HOST' "$ROOT$CONF_PATH" 2>/dev/null; then
    systemctl_do daemon-reload
    systemctl_do enable "$NAME.service"
    say "enabled but NOT started: set kube-apiserver-url in $CONF_PATH, then: systemctl start $NAME"
  elif [ -n "$(missing_files)" ]; then
    systemctl_do daemon-reload
    systemctl_do enable "$NAME.service"
    say "enabled but NOT started: missing$(missing_files) (named in $CONF_PATH); then: systemctl start $NAME"
  else
    systemctl_do daemon-reload
    systemctl_do enable "$NAME.service"
    if [ "$bin_changed" = 1 ] || [ "$unit_changed" = 1 ]; then
      systemctl_do restart "$NAME.service"
    else
      systemctl_do start "$NAME.service"
    fi
    say "service $NAME is running"
  fi
  if [ "$bin_changed" = 0 ] && [ "$unit_changed" = 0 ]; then
    say "up to date"
  else
    say "done"
  fi
}

if [ "$UNINSTALL" = 1 ]; then
  uninstall
else
  install_all
fi
