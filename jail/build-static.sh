#!/usr/bin/env bash
# Builds ccos-jail statically linked: target/static/release/ccos-jail.
#
# usage: jail/build-static.sh [CARGO-OPTIONS...]   (e.g. --offline, --locked)
#
# Why: each `ccos-jail run` is a fresh process, and a dynamically linked one
# spends part of its start in the dynamic loader and in libgcc_s's
# constructor, both of which probe the CPU with CPUID; under a hypervisor
# every CPUID traps: in paired runs on the project's VM the static build was
# 0.1-0.8 ms faster per run, about 0.35 ms in the median pair (README,
# "Speed"). Statically linked, only glibc's own probe is left.
#
# Why not in `cargo build`: the flag that links the C runtime statically
# (`-C target-feature=+crt-static`) cannot be set for one binary in a
# Cargo.toml, and given to every crate (RUSTFLAGS, .cargo/config.toml) it
# breaks the proc-macro crates, which must be shared objects. `cargo rustc`
# gives it to the final binary alone, which is all it needs: the C library
# and libgcc_eh are chosen when that binary is linked. Its own target
# directory keeps it apart from `cargo build`'s dynamically linked one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/static}
cargo rustc --release -p ccos-jail --bin ccos-jail "$@" -- -C target-feature=+crt-static
bin=$CARGO_TARGET_DIR/release/ccos-jail
# A dynamic one would still run, just slower: make sure it is static.
if readelf -d "$bin" | grep -q '(NEEDED)'; then
    echo "build-static.sh: $bin is not statically linked" >&2
    exit 1
fi
echo "$bin"
