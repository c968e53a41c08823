#!/usr/bin/env bash
# One business-process action end to end on the emulated portal: starts `etl emulate bitrix24`
# (the demo portal with an installed app), `etl serve` on pipelines/bp/, fires the workflow
# «Изменение Сделки» at it the way Bitrix24's queue does, and prints serve's journal line (the
# reply sent with bizproc.event.send). Usage: bash examples/bp_demo.sh [path/to/etl]
set -euo pipefail
cd "$(dirname "$0")/.."
etl=${1:-target/debug/etl}
[ -x "$etl" ] || cargo build -q --bin etl
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$etl" emulate bitrix24 > "$work/vars" &
until grep -q '^ready$' "$work/vars" 2>/dev/null; do sleep 0.2; done
set -a; source <(grep '=' "$work/vars"); set +a
portal=${B24_APP_ENDPOINT%/rest/}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$etl" serve --listen "127.0.0.1:$port" --pipelines pipelines/bp --state "$work/state.db" \
  --journal "$work/journal.jsonl" 2> "$work/serve.log" &
until curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; do sleep 0.2; done

echo "firing workflow: b24etl_update_deal on DEAL_96000 (title «Новое название»)"
curl -s -X POST "$portal/_emulator/workflow" -H 'Content-Type: application/json' -d "{
  \"handler\": \"http://127.0.0.1:$port/bp/b24etl_update_deal\", \"code\": \"b24etl_update_deal\",
  \"document_id\": \"DEAL_96000\", \"properties\": {\"deal_id\": \"96000\", \"title\": \"Новое название\"},
  \"user_id\": 1}" -o /dev/null -w 'the emulated portal queued it; the handler answered HTTP %{http_code}\n'
until [ -s "$work/journal.jsonl" ]; do sleep 0.2; done
echo "serve's journal (the reply sent with bizproc.event.send):"
cat "$work/journal.jsonl"
