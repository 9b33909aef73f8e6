#!/usr/bin/env bash
# The rows of issue #12 measured in quick alternation, for a host whose speed drifts.
#
#   bash benches/peers/paired.sh          # from the crate root, after `compare.sh` (or
#                                         # `run_all.sh install`) built the peers; ~11 min
#
# Why: on some hosts one server's 5 s samples a minute apart differ by ±20 % with no
# steal time reported, so the medians of `compare.sh` (each server restarted and
# measured in turn, a few minutes per repetition) cannot tell a 3 % difference.
# Here a round starts, warms up (1 s), samples (SAMPLE s) and stops every server of a
# row in turn, the order rotating from round to round, PAIRS rounds. Samples of one round
# are seconds apart, so the drift mostly cancels in their ratio. Each sample is a new
# process: with every server left running for the whole row, two runs gave c=50
# ratios of 0.99× and 1.08× against tokio+hyper (15–20 rounds each), so the processes
# themselves (how each happened to start) decided the row.
#
# Rows: pinned (servers on core 0, wrk on core 1) c=50 and c=1000, `hello --mixin
# scheduled` against tokio+hyper and nginx with one worker; shared (both float) c=1000,
# `--mixin preforked --workers 2 --inner scheduled --accept reuseport` against nginx with
# two workers. The commands are the peer kit's (`../shared/peers/run_all.sh`).
# Per round: req/s and server CPU (user+sys of its process group, from /proc). Printed:
# per row and peer, rounds won, the median of the round ratios with a 90 % bootstrap
# interval, for req/s and for requests per server CPU-second (≥ 1.00: mixserve ahead).
#
# Knobs (environment): PAIRS=20, SAMPLE=2 (seconds), PORT=18200,
# PEERS_WORK (default ~/.cache/mixserve-peers), OUT (default a new directory under it).
# Needs: wrk, nginx, taskset, python3; a machine doing nothing else.
set -euo pipefail

PAIRS=${PAIRS:-20}
SAMPLE=${SAMPLE:-2}
PORT=${PORT:-18200}
# shellcheck source=servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"
require paired wrk nginx taskset python3
OUT=${OUT:-$work/results/paired-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
: >"$OUT/rounds.jsonl"

# The process group of the server running now ("" when none).
group=""
# stop: ends the running server, if any, and waits for it.
stop() {
  [[ -n $group ]] || return 0
  kill -TERM -- "-$group" 2>/dev/null || true
  wait "$group" 2>/dev/null || true
  group=""
}
trap stop EXIT

# command NAME PORT: the server's command line, listening on 127.0.0.1:PORT.
command_of() {
  local name=$1 port=$2
  case $name in
    mixserve-scheduled) echo "$hello --mixin scheduled --addr 127.0.0.1:$port" ;;
    mixserve-preforked-2w) echo "$hello --mixin preforked --workers 2 --inner scheduled --accept reuseport --addr 127.0.0.1:$port" ;;
    tokio-hyper) echo "$hyper $port" ;;
    nginx-1w | nginx-2w)
      local prefix=$OUT/$name workers=${name#nginx-}
      mkdir -p "$prefix/tmp"
      sed -e "s#@WORKERS@#${workers%w}#; s#@PORT@#$port#; s#@PREFIX@#$prefix#g" "$kit_conf" >"$prefix/nginx.conf"
      echo "nginx -p $prefix -c $prefix/nginx.conf -e $prefix/error.log"
      ;;
  esac
}

# cpu_ticks GROUP: user+sys clock ticks of every process of the group.
cpu_ticks() {
  local pid sum=0 ticks
  for pid in $(pgrep -g "$1"); do
    ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    sum=$((sum + ticks))
  done
  echo "$sum"
}

# start NAME PORT PIN WRKPIN CONNS: starts the server in a process group of its own
# (sets `group`), waits until it listens, and warms it up with 1 s of wrk.
start() {
  local name=$1 port=$2 pin=$3 wrkpin=$4 conns=$5 tries=0
  setsid bash -c "ulimit -n 20000; exec $pin $(command_of "$name" "$port")" \
    >>"$OUT/$name.log" 2>&1 </dev/null &
  group=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    tries=$((tries + 1))
    if ((tries > 100)); then
      echo "paired: $name does not listen on $port (see $OUT/$name.log)" >&2
      exit 1
    fi
    sleep 0.1
  done
  $wrkpin wrk -t2 -c"$conns" -d1s "http://127.0.0.1:$port/" >/dev/null
}

# row SETUP CONNS SERVER...: PAIRS rounds; in each, every server in turn (the order
# rotating) is started, warmed up, sampled and stopped.
row() {
  local setup=$1 conns=$2
  shift 2
  local names=("$@") n=$# pin="" wrkpin="" round i k name before after out
  [[ $setup == pinned ]] && pin="taskset -c 0" wrkpin="taskset -c 1"
  for round in $(seq 1 "$PAIRS"); do
    for i in $(seq 0 $((n - 1))); do
      k=$(((i + round - 1) % n))
      name=${names[$k]}
      start "$name" "$PORT" "$pin" "$wrkpin" "$conns"
      before=$(cpu_ticks "$group")
      out=$($wrkpin wrk -t2 -c"$conns" -d"${SAMPLE}s" "http://127.0.0.1:$PORT/")
      after=$(cpu_ticks "$group")
      stop
      printf '{"setup":"%s","conns":%s,"server":"%s","round":%s,"requests":%s,"rps":%s,"cpu_ticks":%s}\n' \
        "$setup" "$conns" "$name" "$round" \
        "$(awk '/requests in/ { print $1 }' <<<"$out")" \
        "$(awk '/Requests\/sec/ { print $2 }' <<<"$out")" \
        "$((after - before))" >>"$OUT/rounds.jsonl"
    done
  done
}

row pinned 50 mixserve-scheduled tokio-hyper nginx-1w
row pinned 1000 mixserve-scheduled tokio-hyper nginx-1w
row shared 1000 mixserve-preforked-2w nginx-2w

echo "results: $OUT/rounds.jsonl"
python3 - "$OUT/rounds.jsonl" "$(getconf CLK_TCK)" <<'EOF'
import collections, json, random, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
hz = int(sys.argv[2])
by_round = collections.defaultdict(dict)
for r in rows:
    by_round[(r["setup"], r["conns"], r["round"])][r["server"]] = r

def interval(ratios):
    rng = random.Random(1)
    meds = sorted(statistics.median(rng.choice(ratios) for _ in ratios) for _ in range(2000))
    return meds[int(0.05 * len(meds))], meds[int(0.95 * len(meds)) - 1]

def per_cpu_s(r):
    return r["requests"] * hz / r["cpu_ticks"] if r["cpu_ticks"] else None

print("| row | rounds | mixserve won | req/s: median of round ratios, 90 % interval | req per server CPU-s: same |")
print("|---|---|---|---|---|")
rows_seen = sorted({(s, c) for s, c, _ in by_round}, key=lambda k: (k[0] != "pinned", k[1]))
for setup, conns in rows_seen:
    rounds = [v for (s, c, _), v in sorted(by_round.items()) if (s, c) == (setup, conns)]
    ours = next(name for name in rounds[0] if name.startswith("mixserve"))
    for peer in sorted(name for name in rounds[0] if name != ours):
        pairs = [(v[ours], v[peer]) for v in rounds if ours in v and peer in v]
        rps = [a["rps"] / b["rps"] for a, b in pairs]
        cpu = [per_cpu_s(a) / per_cpu_s(b) for a, b in pairs if per_cpu_s(a) and per_cpu_s(b)]
        won = sum(1 for x in rps if x > 1)
        lo, hi = interval(rps)
        clo, chi = interval(cpu) if cpu else (0, 0)
        cmed = statistics.median(cpu) if cpu else 0
        print(f"| {setup} c={conns}, {ours} / {peer} | {len(pairs)} | {won} "
              f"| {statistics.median(rps):.3f}× ({lo:.3f}–{hi:.3f}) | {cmed:.3f}× ({clo:.3f}–{chi:.3f}) |")
print()
print("| row | server | median req/s | median req per server CPU-s |")
print("|---|---|---|---|")
for setup, conns in rows_seen:
    names = sorted({r["server"] for r in rows if (r["setup"], r["conns"]) == (setup, conns)})
    for name in names:
        rs = [r for r in rows if (r["setup"], r["conns"], r["server"]) == (setup, conns, name)]
        med = statistics.median(r["rps"] for r in rs)
        cpus = [x for x in map(per_cpu_s, rs) if x]
        print(f"| {setup} c={conns} | {name} | {med:,.0f} | {statistics.median(cpus):,.0f} |")
EOF
