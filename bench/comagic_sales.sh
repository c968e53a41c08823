#!/usr/bin/env bash
# Seed 003 at scale: 20,000 orders over 5,000 phones and 200,000 calls, against the emulators
# (`etl emulate comagic`, on 127.0.0.1). Runs pipelines/comagic_sales.yaml twice with
# update_db=true and prints, per run: wall time, Data API requests (by method), points used,
# -32029 answers, and requests and points per tagged phone. The second run must make no write.
#
#   bench/comagic_sales.sh                      # the figures of the issue
#   ORDERS=2000 PHONES=500 CALLS=20000 bench/comagic_sales.sh
#   MINUTE_LIMIT=150 MINUTE_SECS=1 bench/comagic_sales.sh   # a tight budget, in a compressed "minute"
#
# Needs: curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${ORDERS:-20000}
PHONES=${PHONES:-5000}
CALLS=${CALLS:-200000}
MINUTE_LIMIT=${MINUTE_LIMIT:-10000}
DAY_LIMIT=${DAY_LIMIT:-1000000}
MINUTE_SECS=${MINUTE_SECS:-60}
LATENCY_MS=${LATENCY_MS:-0}

cargo build --release --quiet
ETL=target/release/etl
WORK=$(mktemp -d)
trap 'kill "$EMU_PID" 2>/dev/null || true; wait "$EMU_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

$ETL emulate comagic --orders "$ORDERS" --phones "$PHONES" --calls "$CALLS" --seed 7 \
  --minute-limit "$MINUTE_LIMIT" --day-limit "$DAY_LIMIT" --minute-secs "$MINUTE_SECS" \
  --latency-ms "$LATENCY_MS" > "$WORK/emulator.env" 2> "$WORK/emulator.log" &
EMU_PID=$!
for _ in $(seq 1 600); do
  grep -q '^ready$' "$WORK/emulator.env" 2>/dev/null && break
  kill -0 "$EMU_PID" 2>/dev/null || { cat "$WORK/emulator.log"; exit 1; }
  sleep 0.1
done
set -a
# shellcheck disable=SC1091
. <(grep '=' "$WORK/emulator.env")
set +a

stats() { curl -sf "$COMAGIC_STATS_URL"; }

echo "emulated: $ORDERS orders, $PHONES phones, $EMULATED_CALLS calls; budget $MINUTE_LIMIT points per ${MINUTE_SECS}s, $DAY_LIMIT per day"
printf '%-6s %8s %7s %9s %7s %7s %6s %8s %7s %7s %12s %12s\n' run wall_s tagged requests reads writes points "-32029" problem updated req/tagged pts/tagged
for run in 1 2; do
  before=$(stats)
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$WORK/time$run" $ETL run pipelines/comagic_sales.yaml --state "$WORK/state.db" --no-progress \
    --set settings.update_db=true --journal "$WORK/journal$run.json" > "$WORK/run$run.out" 2> "$WORK/run$run.err" \
    || { echo "run $run failed:"; tail -5 "$WORK/run$run.err"; cat "$WORK/journal$run.json"; exit 1; }
  end=$(date +%s.%N)
  after=$(stats)
  jq -rn --argjson a "$before" --argjson b "$after" --slurpfile j "$WORK/journal$run.json" \
     --arg run "$run" --arg wall "$(echo "$end - $start" | bc)" '
    def d(k): ($b.by_method[k] // 0) - ($a.by_method[k] // 0);
    ($b.requests - $a.requests) as $req
    | (d("set.tag_sales") + d("unset.tag_communications")) as $writes
    | ($b.points - $a.points) as $pts
    | ($j[0].journal.tags_applied + $j[0].journal.tags_removed_updated) as $tagged
    | [$run, ($wall | tonumber | . * 100 | round / 100), $tagged, $req, ($req - $writes), $writes, $pts,
       ($b.limit_exceeded - $a.limit_exceeded), $j[0].journal.problem, $j[0].journal.tags_removed_updated,
       (if $tagged > 0 then ($req / $tagged * 1000 | round / 1000) else "-" end),
       (if $tagged > 0 then ($pts / $tagged * 1000 | round / 1000) else "-" end)]
    | @tsv' | awk -F'\t' '{ printf "%-6s %8s %7s %9s %7s %7s %6s %8s %7s %7s %12s %12s\n", $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12 }'
  jq -c --argjson a "$before" '.by_method as $m | $m | with_entries(.value -= ($a.by_method[.key] // 0)) | with_entries(select(.value > 0))' <<<"$after" | sed 's/^/       by method: /'
  read -r user sys rss < "$WORK/time$run"
  echo "       etl process: cpu $(echo "$user + $sys" | bc)s, peak memory $((rss / 1024)) MB (the rest of the wall time is waiting: for the emulators, and for the point budget)"
  jq -c '.journal | {phones_analyzed, communications_found, tags_applied, tags_removed_updated, problem, log_lines: (.log | length)}' "$WORK/journal$run.json" | sed 's/^/       journal:   /'
done
