#!/usr/bin/env bash
# report.sh: run the bench scenarios of BENCHMARKS.md against fresh servers and print
# benchstat tables plus the raw Go benchmark lines. Usage:
#
#   bench/report.sh [RUNS] > report.txt        # RUNS per scenario, default 3
#   only='protocol' bench/report.sh 3         # only the lines of scenarios matching an ERE
#
# Builds bin/webpubsub and the gorilla baseline (bench/baseline), then for each scenario
# starts a fresh server on 127.0.0.1:0, runs one bench, stops the server, RUNS times.
# Every run is bounded by the bench's own count and --timeout. Progress goes to stderr.
#
# The upstream scenarios (issue 4) start the server with the configuration that
# `webpubsub bench echo --print-config` prints, so that its event handler points at the
# bench's built-in upstream on a fixed port ($upstream_port, default 18081):
#   - echo: 1 000 plain clients whose messages go through the upstream and back;
#   - the slow-upstream pair: fan-out on hub "fast" alone, then fan-out on hub "fast" while
#     an echo bench on hub "slow" has an upstream that takes 2 s per event. The fan-out
#     lines are labelled slowupstream=none and slowupstream=2s, so benchstat puts them side
#     by side; the echo run of the pair is reported too (as Echo/.../delay=2s).
#
# The protocol scenarios (issue 5) run the idle hold with reliable connections
# (--protocol json.reliable) and the 10 000-member fan-out once per client protocol (json,
# json.reliable, protobuf, protobuf.reliable). Every line carries protocol=..., and two
# extra benchstat tables put the protocols side by side (-col /protocol, json first, so
# each delta is against plain JSON): memory per idle connection, and for the fan-out the
# server's CPU per delivery and p99. The issue's target is a reliable member at most 1.3x
# a plain one per delivery: (1 + delta) of json.reliable's cpu-s/Mdeliveries.
#
# The scrape pair (issue 10; alone with only=scrape) runs the paced 10 000-member fan-out
# twice on the same fresh server, started with an admin listener on $admin_port (default
# 19090): once alone (scrape=off) and once with the bench polling /metrics every second
# (scrape=on). A benchstat table puts them side by side (-col /scrape): the metrics must
# cost nothing measurable, so server CPU per million deliveries should match within noise.
#
# The drain scenario (issue 10; alone with only=drain) holds 19 000 connections on a fresh
# server whose drain closes 2 000 a second after the default 5 s delay, sends it SIGTERM
# and has every closed client reconnect to a second fresh server, as a balancer would send
# it to the rest of the fleet. The bench reports how long the drain took and the closes
# and reconnects per second.
#
# The filter scenarios (issue 6; alone with only=filter) send to all of 10 000
# connections (--target all; member i is user bench-<i> in group g<i mod 2>) without a
# filter and with three: userId ne null (true for all: the cost of evaluating a filter),
# 'g0' in groups (true for half) and a longer one true for all. Each runs paced (50 sends
# at 5/s, as the other fan-outs) and overloaded (200 sends offered at 40/s, 4 in flight:
# the deliveries per second this machine reaches). Lines carry filter=none|all|half|complex,
# and a benchstat table puts them side by side (-col /filter, none first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-3}
# only: an extended regexp; when set, only the scenarios whose line below matches it run,
# and the slow-upstream pair only when it matches "slowupstream".
only=${only:-}
key=benchKEYbenchKEYbenchKEYbenchKEYbenchKEY0123
upstream=127.0.0.1:${upstream_port:-18081}
admin=127.0.0.1:${admin_port:-19090}
out=$(mktemp -d)
benchstat="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

echo ">> building bin/webpubsub and the baseline" >&2
go build -o bin/webpubsub ./cmd/webpubsub
(cd bench/baseline && go build -o "$out/baseline" .)
bin/webpubsub bench echo --hub echo --upstream-listen "$upstream" --print-config >"$out/echo.yaml"
bin/webpubsub bench echo --hub slow --upstream-listen "$upstream" --print-config >"$out/slow.yaml"

# start_server TARGET [CONFIG [FLAGS...]]: a fresh TARGET server (webpubsub|baseline) on a
# free port; sets pid and port.
start_server() {
  local target=$1 config=${2:-} log="$out/server.log"
  if [ "$target" = webpubsub ]; then
    bin/webpubsub serve --listen 127.0.0.1:0 --access-key "$key" --log-level warn ${config:+--config "$config"} "${@:3}" >"$log" 2>&1 &
  else
    "$out/baseline" -listen 127.0.0.1:0 -access-key "$key" >"$log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  if [ -z "$port" ]; then echo "server did not start:" >&2; cat "$log" >&2; kill "$pid"; return 1; fi
  sleep 1
}

stop_server() {
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# bench_run TARGET LABEL SCENARIO ARGS...: one bench against the running server, its lines
# renamed BenchmarkTargetScenario[/LABEL]/params.
bench_run() {
  local target=$1 label=$2 scenario=$3; shift 3
  local err="$out/bench-$scenario-$BASHPID.err"
  bin/webpubsub bench "$scenario" "$@" --format bench --server-pid "$pid" \
    --connection-string "Endpoint=http://127.0.0.1:$port;AccessKey=$key;Version=1.0;" 2>"$err" |
    grep '^Benchmark' | sed "s/^Benchmark\([A-Za-z]*\)/Benchmark${target^}\1${label:+\/$label}/" || { cat "$err" >&2; }
}

# one TARGET SCENARIO ARGS...: fresh TARGET server, one bench run. An echo run gets a
# server configured for its upstream.
one() {
  local target=$1 config=""
  [ "$2" = echo ] && config="$out/echo.yaml"
  start_server "$target" "$config" || return 0
  bench_run "$target" "" "${@:2}"
  stop_server
}

# slow_pair: fan-out on hub fast alone, then (on another fresh server) while an echo bench on
# hub slow waits 2 s in its upstream per event. Both servers have the same configuration.
fanout_fast=(fanout --hub fast --members 1000 --messages 50 --rate 5 --size 64)
slow_pair() {
  start_server webpubsub "$out/slow.yaml" || return 0
  bench_run webpubsub slowupstream=none "${fanout_fast[@]}"
  stop_server

  start_server webpubsub "$out/slow.yaml" || return 0
  bench_run webpubsub "" echo --hub slow --upstream-listen "$upstream" --upstream-delay 2s \
    --conns 1000 --messages 10 --rate 5 --size 64 --timeout 20s >"$out/slow-echo.bench" &
  local echo_pid=$!
  # Let the echo bench connect and fill the slow upstream before the fan-out starts.
  sleep 5
  bench_run webpubsub slowupstream=2s "${fanout_fast[@]}"
  wait "$echo_pid" || true
  cat "$out/slow-echo.bench"
  stop_server
}

# scrape_pair: the paced 10 000-member fan-out without and with a scraper on /metrics, on
# one fresh server per pair (the order alternates between rounds, so drift hits both).
fanout_paced=(fanout --members 10000 --messages 50 --rate 5 --size 64)
scrape_pair() {
  local round=$1 first=off second=on label
  if [ $((round % 2)) = 0 ]; then first=on second=off; fi
  start_server webpubsub "" --admin "$admin" || return 0
  for label in $first $second; do
    if [ "$label" = on ]; then
      bench_run webpubsub scrape=on "${fanout_paced[@]}" --scrape "http://$admin/metrics"
    else
      bench_run webpubsub scrape=off "${fanout_paced[@]}"
    fi
  done
  stop_server
}

# drain_pair: bench drain of 19 000 connections at 2 000/s, reconnecting to a second server.
drain_pair() {
  start_server webpubsub "" || return 0
  local pid_b=$pid port_b=$port
  mv "$out/server.log" "$out/server-b.log" # the next server's log starts afresh
  WPS_SHUTDOWN__CLOSERATEPERSECOND=2000 start_server webpubsub "" || { kill "$pid_b"; return 0; }
  bench_run webpubsub "" drain --conns 19000 \
    --reconnect-to "Endpoint=http://127.0.0.1:$port_b;AccessKey=$key;Version=1.0;"
  wait "$pid" 2>/dev/null || echo ">> the drained server exited with $?" >&2
  pid=$pid_b
  stop_server
}

# filter_set: send to all of 10 000 connections, without a filter and with three, paced and
# overloaded; each run on a fresh server.
filter_names=(none all half complex)
filters=("" "userId ne null" "'g0' in groups" "'g1' in groups or (startswith(userId, 'bench-') and length(groups) gt 0)")
filter_loads=("--messages 50 --rate 5" "--messages 200 --rate 40 --in-flight 4")
filter_set() {
  local load i
  for load in "${filter_loads[@]}"; do
    for i in "${!filters[@]}"; do
      start_server webpubsub || continue
      # shellcheck disable=SC2086
      bench_run webpubsub "" fanout --members 10000 $load --size 64 --target all --member-groups 2 \
        ${filters[i]:+--filter "${filters[i]}"} --filter-name "${filter_names[i]}"
      stop_server
    done
  done
}

scenarios=(
  "webpubsub idle    --conns 19000 --hold 10s"
  "webpubsub idle    --conns 19000 --hold 10s --protocol json.reliable"
  "webpubsub connect --conns 19000 --concurrency 200"
  "webpubsub fanout  --members 10000 --messages 50 --rate 5 --size 64"
  "webpubsub fanout  --members 10000 --messages 50 --rate 5 --size 64 --protocol json.reliable"
  "webpubsub fanout  --members 10000 --messages 50 --rate 5 --size 64 --protocol protobuf"
  "webpubsub fanout  --members 10000 --messages 50 --rate 5 --size 64 --protocol protobuf.reliable"
  "baseline  fanout  --members 10000 --messages 50 --rate 5 --size 64"
  "webpubsub fanout  --members 10000 --messages 50 --rate 5 --size 64 --publisher client"
  "webpubsub chat    --groups 500 --members-per-group 10 --messages 5 --rate 1 --size 64"
  "webpubsub echo    --hub echo --upstream-listen $upstream --conns 1000 --messages 20 --rate 5 --size 64"
)
for r in $(seq "$runs"); do
  for s in "${scenarios[@]}"; do
    [ -z "$only" ] || grep -Eq -- "$only" <<<"$s" || continue
    echo ">> run $r/$runs: $s" >&2
    # shellcheck disable=SC2086
    one $s >>"$out/all.bench"
  done
  if [ -z "$only" ] || grep -Eq -- "$only" <<<slowupstream; then
    echo ">> run $r/$runs: fan-out on hub fast, alone and beside a 2 s upstream on hub slow" >&2
    slow_pair >>"$out/all.bench"
  fi
  if [ -z "$only" ] || grep -Eq -- "$only" <<<scrape; then
    echo ">> run $r/$runs: 10 000-member fan-out without and with a /metrics scraper" >&2
    scrape_pair "$r" >>"$out/all.bench"
  fi
  if [ -z "$only" ] || grep -Eq -- "$only" <<<drain; then
    echo ">> run $r/$runs: drain of 19 000 connections at 2 000/s, reconnecting to a second server" >&2
    drain_pair >>"$out/all.bench"
  fi
  if [ -z "$only" ] || grep -Eq -- "$only" <<<filter; then
    echo ">> run $r/$runs: send to all of 10 000, unfiltered and with three filters" >&2
    filter_set >>"$out/all.bench"
  fi
done

echo '```'
$benchstat -filter '.unit:(bytes/conn OR handshakes/s OR deliveries/s OR roundtrips/s OR ratio OR p50-sec OR p99-sec OR p999-sec OR max-sec OR upstream-p99-sec OR cpu-s/Mdeliveries OR cpu-ms/send OR cpu-us/roundtrip OR server-cpu-s OR bench-cpu-s OR parent-cpu-s OR worker-cpu-s OR failures)' \
  "$out/all.bench" | grep -v 'need >= 6\|summaries must\|^$'
echo '```'
# The protocol tables need lines of another protocol than json; a table benchstat finds no
# lines for is left out (grep -v fails on no input, hence || true).
if grep -Eq '/protocol=(json\.reliable|protobuf)' "$out/all.bench"; then
  echo
  echo 'By protocol (each column against protocol=json): idle memory per connection, and the'
  echo '10 000-member fan-out through REST: server CPU per million deliveries and latency.'
  echo
  echo '```'
  bycol='/protocol@(json json.reliable protobuf protobuf.reliable)'
  $benchstat -col "$bycol" -filter '.name:WebpubsubIdle .unit:bytes/conn' "$out/all.bench" |
    grep -v 'need >= 6\|summaries must\|^$' || true
  echo
  $benchstat -col "$bycol" \
    -filter '.name:WebpubsubFanout /members:10000 /publisher:rest -/target:all .unit:(cpu-s/Mdeliveries OR p50-sec OR p99-sec OR deliveries/s OR ratio OR seqacks/delivery)' \
    "$out/all.bench" | grep -v 'need >= 6\|summaries must\|^$' || true
  echo '```'
fi
if grep -q '/target=all/' "$out/all.bench"; then
  echo
  echo 'Send to all of 10 000 connections, by filter (each column against filter=none): deliveries'
  echo 'per second, server CPU per million deliveries and per send, latency.'
  echo
  echo '```'
  $benchstat -col '/filter@(none all half complex)' \
    -filter '.name:WebpubsubFanout /target:all .unit:(deliveries/s OR ratio OR cpu-s/Mdeliveries OR cpu-ms/send OR p50-sec OR p99-sec OR failures)' \
    "$out/all.bench" | grep -v 'need >= 6\|summaries must\|^$' || true
  echo '```'
fi
if grep -q '/scrape=' "$out/all.bench"; then
  echo
  echo 'The paced 10 000-member fan-out without and with a scraper polling /metrics every second'
  echo '(the on column against off): server CPU per million deliveries, deliveries/s, latency.'
  echo
  echo '```'
  $benchstat -col '/scrape@(off on)' \
    -filter '.name:WebpubsubFanout .unit:(cpu-s/Mdeliveries OR deliveries/s OR ratio OR p50-sec OR p99-sec OR scrapes OR failures)' \
    "$out/all.bench" | grep -v 'need >= 6\|summaries must\|^$' || true
  echo '```'
fi
if grep -q '^BenchmarkWebpubsubDrain' "$out/all.bench"; then
  echo
  echo 'Drain of 19 000 connections at closeRatePerSecond 2000 after the 5 s drain delay, every'
  echo 'client reconnecting to a second server: times from the SIGTERM, closes and reconnects per'
  echo 'second (most in any 1 s window, median of whole seconds).'
  echo
  echo '```'
  $benchstat -filter '.name:WebpubsubDrain .unit:(closes OR first-close-sec OR last-close-sec OR closes/s-max OR closes/s-p50 OR closes-1001 OR exit-sec OR reconnects OR reconnects/s-max OR reconnects/s-p50 OR server-cpu-s OR failures)' "$out/all.bench" | grep -v 'need >= 6\|summaries must\|^$' || true
  echo '```'
fi
echo
echo 'Raw lines:'
echo
echo '```'
cat "$out/all.bench"
echo '```'
rm -rf "$out"
