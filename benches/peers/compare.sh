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
#
# Knobs (environment): PEERS_KIT (default ../shared/peers/run_all.sh), DURATION=5, REPS=2,
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

if [[ -n $row2w ]]; then
  HELLO_PEERS="nginx-2w mixserve-preforked-2w-scheduled" CONNS=1000 SETUPS=shared bash "$kit" hello >/dev/null
  kill "$sampler" 2>/dev/null
  echo "results: $OUT"
  exec python3 "$here/ratios.py" "$OUT"
fi
HELLO_PEERS="tokio-hyper nginx-1w nginx-2w may_minihttp mixserve-scheduled mixserve-preforked-2w-scheduled" \
  CONNS="50 1000" SETUPS="pinned shared" bash "$kit" hello >/dev/null
kill "$sampler" 2>/dev/null
COMET_PEERS="tokio-hyper may_minihttp mixserve-scheduled mixserve-preforked-2w-scheduled" \
  COMET_NS=${COMET_N:-10000} SETUPS="shared" REPS=${COMET_REPS:-3} bash "$kit" comet >/dev/null

echo "results: $OUT (full tables: $OUT/summary.md)"
python3 "$here/ratios.py" "$OUT"
