#!/bin/bash
# How deep a parked comet waiter's coroutine stack is, in bytes, at the moment it
# suspends inside its long poll: the figure that decides whether a waiter costs one
# stack page (~5 KiB per waiter in all) or two (~9 KiB). `.ci/waiter-memory` only sees
# the page count; this says how much of the page is left.
#
#   cargo build --release --example comet
#   benches/stack/parked_depth.sh [BINARY] [http|scgi]
#
# It starts BINARY (default target/release/examples/comet) under `--mixin scheduled` on
# a free port from 18760-18779, attaches gdb with a breakpoint on the coroutine switch
# (`mixserve::rt::coroutine::suspend`), sends one `GET /wait` (as HTTP, or as SCGI with
# `scgi`), and at the first suspend whose backtrace is inside the wait prints the
# distance from the top of the coroutine's stack mapping to the stack pointer. Needs
# gdb (`apt-get install -y gdb`) and python3, and ptrace rights over its own children.
set -euo pipefail
bin=${1:-target/release/examples/comet}
protocol=${2:-http}
command -v gdb >/dev/null || { echo "needs gdb: apt-get install -y gdb" >&2; exit 2; }
port=$(python3 -c '
import socket
for port in range(18760, 18780):
    try:
        socket.create_server(("127.0.0.1", port)).close(); print(port); break
    except OSError:
        pass')
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

case $protocol in
  http) printf 'GET /wait HTTP/1.1\r\nHost: depth\r\n\r\n' >"$work/request"; args=() ;;
  scgi) python3 -c '
import sys
h = b"CONTENT_LENGTH\x000\x00SCGI\x001\x00REQUEST_METHOD\x00GET\x00REQUEST_URI\x00/wait\x00"
sys.stdout.buffer.write(str(len(h)).encode() + b":" + h + b",")' >"$work/request"
        args=(--protocol scgi) ;;
  *) echo "protocol: http or scgi" >&2; exit 2 ;;
esac

cat >"$work/depth.py" <<'PY'
import gdb
for _ in range(20):
    gdb.execute("continue")
    trace = gdb.execute("bt 60", to_string=True)
    if "watch_reporting" in trace or "broadcast" in trace.lower():
        rsp = int(gdb.parse_and_eval("$rsp")) & 0xFFFFFFFFFFFFFFFF
        for line in gdb.execute("info proc mappings", to_string=True).splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0].startswith("0x"):
                low, high = int(fields[0], 16), int(fields[1], 16)
                if low <= rsp < high:
                    print(f"parked depth: {high - rsp} bytes of the coroutine stack")
        break
PY

"$bin" --mixin scheduled --addr "127.0.0.1:$port" "${args[@]}" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
  sleep 0.1
done
offset=$(nm -C "$bin" | awk '$3 == "mixserve::rt::coroutine::suspend" && !found {print $1; found = 1}')
[[ -n $offset ]] || { echo "no mixserve::rt::coroutine::suspend symbol in $bin" >&2; exit 2; }
base=$(awk -v path="$(readlink -f "$bin")" '$6 == path {print $1; exit}' "/proc/$pid/maps" | cut -d- -f1)
[[ -n $base ]] || { echo "cannot find $bin mapped in process $pid" >&2; exit 2; }
breakpoint=$(printf '0x%x' $((0x$base + 0x$offset)))
# The waiter connects once gdb holds the server, and stays until gdb has looked.
python3 -c "
import socket, time
time.sleep(1.5)
s = socket.create_connection(('127.0.0.1', $port))
s.sendall(open('$work/request', 'rb').read())
time.sleep(5)" &
gdb -q -p "$pid" -batch -ex "break *$breakpoint" -ex "source $work/depth.py" 2>/dev/null |
  grep "parked depth" || { echo "the waiter never suspended inside its wait" >&2; exit 1; }
