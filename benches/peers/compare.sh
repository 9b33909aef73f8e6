#!/usr/bin/env bash
# mixserve beside tokio+hyper, nginx and may_minihttp, measured in one run with the team's
# peer kit, then the ratios issue #12 asks for.
#
#   bash benches/peers/compare.sh            # from the crate root; ~12 min with the defaults
#   bash benches/peers/compare.sh ratios DIR # only print the ratios of an earlier run
#   bash benches/peers/compare.sh row2w      # only the two-worker shared row, REPS=20 pairs
#
# What runs: `run_all.sh hello` (wrk -t2, keep-alive GET /, DURATION s, REPS repetitions,
# c=50 and c=1000, the server pinned to core 0 and wrk to core 1, and both floating) and
# `run_all.sh comet` (10,000 long-poll waiters released by one notify). CPU and RSS are
# summed over every process of a server (its process group). Ratios are of medians taken in
# this one run; absolute figures drift between machines and between runs.
# The hello servers take turns in a rotating order: repetition r starts with the r-th
# server, so none always runs first or last. A host whose speed drifts over minutes (seen:
# ±20 % between one server's samples a minute apart, with no steal) would otherwise charge
# its drift to whichever server sits where the drift falls, every repetition alike. The kit
# runs servers in a fixed order, so this script calls it once per sample and merges.
#
# Knobs (environment): PEERS_KIT (default ../shared/peers/run_all.sh), DURATION=5, REPS=2,
# LTO=0 (1: build every Rust server, ours and the peers, with fat LTO, see below),
# COMET_N=10000, COMET_REPS=3 (a comet run lasts ~1 s; its CPU figure has 10 ms ticks, so
# one run decides nothing), OUT (results directory; default under the kit's work directory),
# QUIET_STEAL=0.03 (a hello sample during which the hypervisor stole more than this share of
# the CPU time is left out of the "quiet" medians; it stays in the "all samples" ones).
# Needs: the kit installs wrk, nginx and the peers (`run_all.sh install`); a quiet machine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kit=${PEERS_KIT:-../shared/peers/run_all.sh}

if [[ ${1:-} == ratios ]]; then
  exec python3 "$here/ratios.py" "${2:?results directory}"
fi
# The row whose ratio one run of five cannot decide (see ratios.py's paired table): nginx
# with two workers and `preforked 2w × scheduled`, alternately, REPS times (~13 s a pair).
row2w=""
if [[ ${1:-} == row2w ]]; then
  row2w=1 REPS=${REPS:-20}
fi
if [[ ! -f $kit ]]; then
  echo "peer kit not found at $kit (set PEERS_KIT to its run_all.sh)" >&2
  exit 2
fi

export DURATION=${DURATION:-5} REPS=${REPS:-2}
export OUT=${OUT:-$HOME/.cache/mixserve-peers/results/compare-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

# LTO=1: every Rust server of the run (mixserve's examples and the kit's Rust peers,
# built by the kit's install step) with fat LTO and one codegen unit, instead of Cargo's
# default release profile. Both sides alike, so the ratios stay a comparison of code.
if [[ ${LTO:-0} == 1 ]]; then
  export CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
  echo "LTO=1: Rust servers built with fat LTO, one codegen unit" >"$OUT/build.txt"
fi

bash "$kit" install

# The hypervisor's steal time, sampled twice a second beside the hello runs: ratios.py
# charges each wrk sample with the share of CPU time stolen during it and reports the
# medians of the quiet samples beside those of all samples.
sample_steal() {
  while :; do
    echo "$(date +%s.%N) $(awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)"
    sleep 0.5
  done
}
sample_steal >"$OUT/steal.log" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT

# hello_rotated CONNS SETUPS PEER...: REPS repetitions of every setup and server, the
# servers in the rotating order above; the kit's samples merged into $OUT as one run.
hello_rotated() {
  local conns=$1 setups=$2
  shift 2
  local peers=("$@") n=$# rep setup k peer part
  mkdir -p "$OUT/logs" "$OUT/parts"
  for rep in $(seq 1 "$REPS"); do
    for setup in $setups; do
      for k in $(seq 0 $((n - 1))); do
        peer=${peers[$(((k + rep - 1) % n))]}
        part="$OUT/parts/r$rep.$setup.$peer"
        OUT=$part REPS=1 HELLO_PEERS=$peer CONNS=$conns SETUPS=$setup bash "$kit" hello >/dev/null
        merge_part "$part" "$rep"
      done
    done
  done
  python3 "$(dirname "$kit")/tools/summarize.py" "$OUT" >"$OUT/summary.md"
}

# merge_part DIR REP: a one-sample kit run's rows and wrk logs, renumbered as repetition
# REP (the logs keep their times: ratios.py charges each sample with the steal of its
# window, which ends at its log's mtime).
merge_part() {
  local part=$1 rep=$2 log
  python3 -c 'import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    row["rep"] = int(sys.argv[2])
    print(json.dumps(row))' "$part/hello.jsonl" "$rep" >>"$OUT/hello.jsonl"
  cp "$part/versions.txt" "$OUT/versions.txt" 2>/dev/null || true
  for log in "$part"/logs/wrk.*.r1.txt; do
    [[ -e $log ]] || continue
    log=${log##*/}
    cp -p "$part/logs/$log" "$OUT/logs/${log%.r1.txt}.r$rep.txt"
  done
}

if [[ -n $row2w ]]; then
  hello_rotated 1000 shared nginx-2w mixserve-preforked-2w-scheduled
  kill "$sampler" 2>/dev/null
  echo "results: $OUT"
  exec python3 "$here/ratios.py" "$OUT"
fi
hello_rotated "50 1000" "pinned shared" tokio-hyper nginx-1w nginx-2w may_minihttp \
  mixserve-scheduled mixserve-preforked-2w-scheduled
kill "$sampler" 2>/dev/null
COMET_PEERS="tokio-hyper may_minihttp mixserve-scheduled mixserve-preforked-2w-scheduled" \
  COMET_NS=${COMET_N:-10000} SETUPS="shared" REPS=${COMET_REPS:-3} bash "$kit" comet >/dev/null

echo "results: $OUT (full tables: $OUT/summary.md)"
python3 "$here/ratios.py" "$OUT"
