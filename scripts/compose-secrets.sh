#!/usr/bin/env bash
# The secrets compose.yaml reads, made once in .local/compose/ (kept on later runs, like make run's).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.local/compose
mkdir -p "$dir"
chmod 700 "$dir"
make_secret() {  # name, bytes
  [[ -s "$dir/$1" ]] || python3 -c "import secrets; print(secrets.token_urlsafe($2), end='')" > "$dir/$1"
}
make_secret bot_password 18
make_secret notify_token 24
make_secret sentry_client_secret 32
make_secret alerts_password 18
make_secret slack_hook_id 24
[[ -s "$dir/slack_hooks.yaml" ]] || printf -- '- id: "%s"\n  room: "#demo:localhost"\n  name: demo\n' \
  "$(cat "$dir/slack_hook_id")" > "$dir/slack_hooks.yaml"
# Readable by the image's non-root user (compose mounts file secrets with the host file's mode);
# the directory stays private.
chmod 644 "$dir"/*
echo "secrets in $dir; slack hook: http://127.0.0.1:8082/hooks/$(cat "$dir/slack_hook_id")"
