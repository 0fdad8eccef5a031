#!/bin/sh
# Installs the kubectl clients the tests drive (kubectl.1.27 ... kubectl.1.33, the names Google Cloud
# SDK gives them) into DIR, from the official Kubernetes release downloads. Used by the GitHub
# workflows; the development machines already have them in /usr/lib/google-cloud-sdk/bin.
#
# Usage: ci-kubectl.sh DIR
set -eu
dir=${1:?usage: ci-kubectl.sh DIR}
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "ci-kubectl: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
mkdir -p "$dir"
for minor in 27 28 29 30 31 32 33; do
  out="$dir/kubectl.1.$minor"
  [ -x "$out" ] && continue
  version=$(curl -fsSL --retry 3 "https://dl.k8s.io/release/stable-1.$minor.txt")
  curl -fsSL --retry 3 -o "$out.tmp" "https://dl.k8s.io/release/$version/bin/linux/$arch/kubectl"
  curl -fsSL --retry 3 -o "$out.sha256" "https://dl.k8s.io/release/$version/bin/linux/$arch/kubectl.sha256"
  echo "$(cat "$out.sha256")  $out.tmp" | sha256sum -c --quiet -
  chmod 0755 "$out.tmp"
  mv "$out.tmp" "$out"
  rm -f "$out.sha256"
  echo "ci-kubectl: $out ($version)"
done
