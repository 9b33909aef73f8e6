# Sourced by load_cost.sh and paired.sh: where the servers they start live, and a check
# that every program they need is there. Run from the crate root.

work=${PEERS_WORK:-$HOME/.cache/mixserve-peers}
hello=$PWD/target/release/examples/hello
hyper=$work/target/release/hyper_hello
kit_conf=${PEERS_KIT_DIR:-../shared/peers}/tools/nginx.conf.in

# require SCRIPT PROGRAM...: exits 2, naming the first program (or file) not found.
require() {
  local script=$1 need
  shift
  for need in "$@" "$hello" "$hyper" "$kit_conf"; do
    if ! command -v "$need" >/dev/null && [[ ! -e $need ]]; then
      echo "$script: $need not found (cargo build --release --examples; compare.sh installs the rest)" >&2
      exit 2
    fi
  done
}
