#!/usr/bin/env bash
# Installs the E2EE reader's Node packages (tests/e2ee_reader: matrix-js-sdk with its Rust crypto)
# into .tools/e2ee_reader/node_modules with `npm ci`, and links tests/e2ee_reader/node_modules to
# it, so the reader's imports resolve and no package lands in the source tree. Runs npm only when
# the lockfile changed since the last install (its checksum is kept beside the packages).
set -euo pipefail
cd "$(dirname "$0")/.."
source=tests/e2ee_reader
target=.tools/e2ee_reader
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "ensure-e2ee-reader: '$tool' is not on PATH; the E2EE tests need Node.js 20+ and npm" >&2
    exit 1
  fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "ensure-e2ee-reader: Node.js $(node --version) is too old; matrix-js-sdk needs 20+" >&2
  exit 1
fi
stamp="$target/.installed-$(cksum "$source/package-lock.json" | cut -d' ' -f1)"
if [ ! -e "$stamp" ] || [ ! -d "$target/node_modules" ]; then
  mkdir -p "$target"
  cp "$source/package.json" "$source/package-lock.json" "$target/"
  rm -f "$target"/.installed-*
  # No package of the reader needs an install script.
  (cd "$target" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi
ln -sfn ../../"$target"/node_modules "$source/node_modules"
