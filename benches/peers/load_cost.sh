#!/usr/bin/env bash
# What each request costs the load generator and the server, pinned (server on core 0,
# wrk on core 1): `hello --mixin scheduled`, nginx with one worker and tokio+hyper, in
# rotation, ROUNDS times. Per run: req/s, wrk's CPU per request, the server's CPU per
# request, and how often the server blocked (context switches per 1,000 requests).
#
#   bash benches/peers/load_cost.sh      # from the crate root, after `compare.sh` (or
#                                        # `run_all.sh install`) built the peers
#
# Why: in the pinned rows of `compare.sh` wrk is the bottleneck, so req/s follows wrk's
# cost per request more than the server's; this shows both side by side.
# Knobs (environment): C=50 (connections), ROUNDS=6, DURATION=5, PORT=18094,
# PEERS_WORK (default ~/.cache/mixserve-peers, where the kit built tokio+hyper).
# Needs: wrk, nginx, perf, taskset; a quiet machine.
set -euo pipefail

C=${C:-50}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5}
PORT=${PORT:-18094}
# shellcheck source=servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"
require load_cost wrk nginx perf taskset

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/nginx/tmp"
sed -e "s#@WORKERS@#1#; s#@PORT@#$PORT#; s#@PREFIX@#$scratch/nginx#g" "$kit_conf" \
  >"$scratch/nginx/nginx.conf"

# One measured run: the server pinned to core 0, a 1 s warm-up, then DURATION s of wrk
# pinned to core 1 with perf counting both sides.
measure() {
  local name=$1 cmd=$2
  setsid taskset -c 0 bash -c "ulimit -n 20000; exec $cmd" >/dev/null 2>&1 &
  local server=$!
  sleep 0.8
  taskset -c 1 wrk -t2 -c"$C" -d1s "http://127.0.0.1:$PORT/" >/dev/null
  local pids
  pids=$(pgrep -g "$server" | paste -sd,)
  local window
  window=$(awk -v d="$DURATION" 'BEGIN { print d + 0.1 }')
  perf stat -x, -e context-switches,task-clock -p "$pids" -o "$scratch/server" -- sleep "$window" &
  local counting=$!
  taskset -c 1 perf stat -x, -e task-clock -o "$scratch/wrk" -- \
    wrk -t2 -c"$C" -d"${DURATION}s" "http://127.0.0.1:$PORT/" >"$scratch/out"
  wait "$counting"
  kill -TERM -- "-$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  sleep 1
  awk -v name="$name" -v d="$DURATION" -v w="$window" \
    -v rps="$(awk '/Requests\/sec/ { print $2 }' "$scratch/out")" \
    -v wrk_ms="$(awk -F, '/task-clock/ { print $1 }' "$scratch/wrk")" \
    -v srv_ms="$(awk -F, '/task-clock/ { print $1 }' "$scratch/server")" \
    -v switches="$(awk -F, '/context-switches/ { print $1 }' "$scratch/server")" \
    'BEGIN { printf "%-11s %9.0f %13.3f %16.3f %18.2f\n", name, rps,
             wrk_ms * 1000 / (rps * d), srv_ms * 1000 / (rps * w), switches * 1000 / (rps * w) }'
}

printf "%-11s %9s %13s %16s %18s\n" server req/s "wrk µs/req" "server µs/req" "blocks/1000 req"
for _ in $(seq 1 "$ROUNDS"); do
  measure mixserve "$hello --mixin scheduled --addr 127.0.0.1:$PORT"
  measure nginx-1w "nginx -p $scratch/nginx -c $scratch/nginx/nginx.conf -e $scratch/nginx/error.log"
  measure tokio-hyper "$hyper $PORT"
done
