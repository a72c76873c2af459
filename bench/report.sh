#!/usr/bin/env bash
# report.sh: run the bench scenarios of BENCHMARKS.md against fresh servers and print
# benchstat tables plus the raw Go benchmark lines. Usage:
#
#   bench/report.sh [RUNS] > report.txt        # RUNS per scenario, default 3
#
# Builds bin/webpubsub and the gorilla baseline (bench/baseline), then for each scenario
# starts a fresh server on 127.0.0.1:0, runs one bench, stops the server, RUNS times.
# Every run is bounded by the bench's own count and --timeout. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-3}
key=benchKEYbenchKEYbenchKEYbenchKEYbenchKEY0123
out=$(mktemp -d)
benchstat="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

echo ">> building bin/webpubsub and the baseline" >&2
go build -o bin/webpubsub ./cmd/webpubsub
(cd bench/baseline && go build -o "$out/baseline" .)

# one TARGET NAME ARGS...: fresh TARGET server (webpubsub|baseline), one bench run.
one() {
  local target=$1 scenario=$2; shift 2
  local log="$out/server.log" pid port
  if [ "$target" = webpubsub ]; then
    bin/webpubsub serve --listen 127.0.0.1:0 --access-key "$key" --log-level warn >"$log" 2>&1 &
  else
    "$out/baseline" -listen 127.0.0.1:0 -access-key "$key" >"$log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  if [ -z "$port" ]; then echo "server did not start:" >&2; cat "$log" >&2; kill "$pid"; return 1; fi
  sleep 1
  bin/webpubsub bench "$scenario" "$@" --format bench --server-pid "$pid" \
    --connection-string "Endpoint=http://127.0.0.1:$port;AccessKey=$key;Version=1.0;" 2>"$out/bench.err" |
    grep '^Benchmark' | sed "s/^Benchmark/Benchmark${target^}/" || { cat "$out/bench.err" >&2; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

scenarios=(
  "webpubsub idle    --conns 19000 --hold 10s"
  "webpubsub connect --conns 19000 --concurrency 200"
  "webpubsub fanout  --members 10000 --messages 50 --rate 5 --size 64"
  "baseline  fanout  --members 10000 --messages 50 --rate 5 --size 64"
  "webpubsub fanout  --members 10000 --messages 50 --rate 5 --size 64 --publisher client"
  "webpubsub chat    --groups 500 --members-per-group 10 --messages 5 --rate 1 --size 64"
)
for r in $(seq "$runs"); do
  for s in "${scenarios[@]}"; do
    echo ">> run $r/$runs: $s" >&2
    # shellcheck disable=SC2086
    one $s >>"$out/all.bench"
  done
done

echo '```'
$benchstat -filter '.unit:(bytes/conn OR handshakes/s OR deliveries/s OR ratio OR p50-sec OR p99-sec OR p999-sec OR max-sec OR cpu-s/Mdeliveries OR server-cpu-s OR bench-cpu-s OR failures)' \
  "$out/all.bench" | grep -v 'need >= 6\|summaries must\|^$'
echo '```'
echo
echo 'Raw lines:'
echo
echo '```'
cat "$out/all.bench"
echo '```'
rm -rf "$out"
