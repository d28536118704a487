#!/usr/bin/env bash
# The supervisor benchmark: the real ccos-supervisor (release build) on a
# temporary socket and state directory; create-to-exec latency, run
# throughput, GET /v1/runs/{id} per second, RSS with idle runs. See
# bench/README.md, "Supervisor".
#
# usage: bench/supervisor.sh        (as root; Debian 12)
#
# environment (all optional; see supervisor/benches/supervisor.rs):
#   CCOS_SUPERVISOR=PATH        time this daemon binary instead of building
#                               target/release/ccos-supervisor
#   CCOS_BENCH_LATENCY_RUNS=300 CCOS_BENCH_TP_RUNS=1000 CCOS_BENCH_TP_CLIENTS=2,4,8
#   CCOS_BENCH_GET_SECS=3 CCOS_BENCH_GET_THREADS=1,4,16 CCOS_BENCH_IDLE_RUNS=200
#   CCOS_BENCH_PARTS=latency,throughput,get,memory   which parts run
#   CCOS_BENCH_DIR=DIR          where the temporary socket and state go
#                               (default $TMPDIR or /tmp: put it on the disk
#                               the daemon would use, its commits fsync)
#   CCOS_BENCH_OFFLINE=1        no apt-get, cargo --offline
#
# Output: the table on stdout, bench/work/supervisor.json (git-ignored).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
die() { printf 'supervisor.sh: %s\n' "$*" >&2; exit 1; }
log() { printf '== %s\n' "$*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root (the daemon makes jails)"
if ! command -v gcc >/dev/null; then
    [[ -z ${CCOS_BENCH_OFFLINE:-} ]] || die "gcc is missing (it builds bench/first-instruction.c) and CCOS_BENCH_OFFLINE is set"
    log "apt-get install gcc libc6-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
fi

offline=()
[[ -z ${CCOS_BENCH_OFFLINE:-} ]] || offline=(--offline)
cd "$ROOT"
if [[ -z ${CCOS_SUPERVISOR:-} ]]; then
    log "cargo build --release -p ccos-supervisor ${offline[*]}"
    cargo build --release -p ccos-supervisor "${offline[@]}"
    CCOS_SUPERVISOR=${CARGO_TARGET_DIR:-$ROOT/target}/release/ccos-supervisor
fi
export CCOS_SUPERVISOR
exec cargo bench -p ccos-supervisor --bench supervisor "${offline[@]}"
