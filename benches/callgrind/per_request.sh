#!/bin/bash
# Instructions and cache misses per keep-alive request of the `hello` example under
# `--mixin scheduled`, counted by valgrind's callgrind (deterministic: unlike wrk on a VM
# with hypervisor steal, it can tell a change of 1 % apart).
#
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#     cargo build --release --example hello --target-dir target-prof
#   benches/callgrind/per_request.sh target-prof/release/examples/hello [C] [N1] [N2] [valgrind options]
#
# It runs the server under callgrind twice, serving N1 then N2 requests (GET /) over C
# keep-alive connections driven in lockstep by lockstep_client.py (the server is
# stopped while each round of C requests goes out, so its loop sees the whole round in
# one epoll_wait and the figures do not depend on timing), and prints
# (run(N2) - run(N1)) / (N2 - N1) for each event: start-up, connecting and the first
# request of each connection cancel out. Defaults: C=50, N1=2000, N2=12000 (the example
# keeps a connection open for as many requests as come). Add `--cache-sim=yes` for D1/LL misses.
# Only user-space work is counted; valgrind has no vDSO, so a clock read shows as a few
# instructions of a syscall stub. Ports: a free one from 18700-18749 (override: PORT=).
# Needs valgrind and python3; writes its callgrind files to $OUT (default a temp dir).
set -euo pipefail
bin=${1:?usage: per_request.sh HELLO_BINARY [C] [N1] [N2] [valgrind options]}
c=${2:-50} n1=${3:-2000} n2=${4:-12000}
shift $(($# < 4 ? $# : 4))
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
ulimit -n 4096

free_port() { # one of 18700-18749 nothing listens on
  python3 -c '
import socket
for port in range(18700, 18750):
    try:
        socket.create_server(("127.0.0.1", port)).close()
        print(port)
        break
    except OSError:
        pass'
}

run() { # run N FILE [valgrind options]
  local n=$1 file=$2 port=${PORT:-$(free_port)}
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$file" "$@" \
    "$bin" --mixin scheduled --addr "127.0.0.1:$port" >"$file.log" 2>&1 &
  local server=$!
  for _ in $(seq 300); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  local status=0
  python3 "$here/lockstep_client.py" "$port" "$c" "$n" "$server" >/dev/null || status=$?
  kill -TERM "$server"
  wait "$server" || true
  return "$status"
}

run "$n1" "$out/cg.$c.$n1" "$@"
run "$n2" "$out/cg.$c.$n2" "$@"
python3 - "$out/cg.$c.$n1" "$out/cg.$c.$n2" "$((n2 - n1))" "$c" <<'PY'
import sys
def totals(path):
    events = counts = None
    for line in open(path):
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("totals:", "summary:")):
            counts = [int(x) for x in line.split()[1:]]
    return dict(zip(events, counts))
a, b = totals(sys.argv[1]), totals(sys.argv[2])
n = int(sys.argv[3])
print(f"c={sys.argv[4]} per request:", " ".join(f"{k}={(b[k] - a[k]) / n:.1f}" for k in b))
PY
