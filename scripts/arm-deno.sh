#!/bin/sh
# Runs the project's pinned Deno built for aarch64 (linux-arm64-glibc) under qemu user-mode emulation,
# installing what it needs on first use: Debian's qemu-user-static and the arm64 C runtime
# (libc6-arm64-cross, libgcc-s1-arm64-cross) with apt-get, and the arm64 Deno from the npm registry.
# Usage: scripts/arm-deno.sh <deno args...>   e.g. scripts/arm-deno.sh eval 'console.log(Deno.build.arch)'
# The arm64 Deno keeps its own DENO_DIR (under .tools/) unless DENO_DIR is set.
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
# The version is pinned in scripts/deno only.
DENO_VERSION=$(sed -n 's/^DENO_VERSION=//p' "$root/scripts/deno")
tools="$root/.tools/deno-arm64-$DENO_VERSION"
bin="$tools/node_modules/@deno/linux-arm64-glibc/deno"
sysroot=/usr/aarch64-linux-gnu

fail() {
  echo "scripts/arm-deno.sh: $*" >&2
  exit 1
}

have_runtime() {
  command -v qemu-aarch64-static >/dev/null 2>&1 &&
    [ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] &&
    [ -e "$sysroot/lib/libgcc_s.so.1" ]
}

if ! have_runtime; then
  command -v apt-get >/dev/null 2>&1 ||
    fail "qemu-aarch64-static and the arm64 C runtime are missing and there is no apt-get to install them (Debian packages: qemu-user-static libc6-arm64-cross libgcc-s1-arm64-cross)"
  pkgs="qemu-user-static libc6-arm64-cross libgcc-s1-arm64-cross"
  echo "scripts/arm-deno.sh: installing $pkgs with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086 # word splitting of $pkgs is intended
  if ! apt-get install -y -q $pkgs >&2; then
    apt-get update -q >&2 || fail "apt-get update failed (are you root?)"
    apt-get install -y -q $pkgs >&2 || fail "apt-get install $pkgs failed (are you root?)"
  fi
  have_runtime || fail "installed $pkgs but qemu-aarch64-static or $sysroot/lib is still missing"
fi

if [ ! -x "$bin" ]; then
  command -v npm >/dev/null 2>&1 || fail "npm is needed to install the arm64 Deno $DENO_VERSION"
  echo "scripts/arm-deno.sh: installing arm64 Deno $DENO_VERSION from the npm registry into $tools" >&2
  mkdir -p "$tools"
  # --force: npm refuses a package whose os/cpu fields do not match this machine.
  npm install --silent --force --no-save --no-audit --no-fund --ignore-scripts --prefix "$tools" \
    "@deno/linux-arm64-glibc@$DENO_VERSION" >&2 || fail "npm install @deno/linux-arm64-glibc@$DENO_VERSION failed"
  [ -f "$bin" ] || fail "npm installed @deno/linux-arm64-glibc but $bin is missing"
  chmod +x "$bin"
fi

export DENO_DIR="${DENO_DIR:-$tools/deno_dir}"
exec qemu-aarch64-static -L "$sysroot" "$bin" "$@"
