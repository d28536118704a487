#!/usr/bin/env bash
# Spawn latency of `ccos-jail run -- /bin/true` next to bubblewrap, crun and
# two floor references, in one hyperfine run. See bench/README.md.
#
# usage: bench/spawn.sh            (as root; Debian 12)
#
# environment:
#   RUNS=400 WARMUP=20       hyperfine runs and warmup runs per contender
#   CCOS_JAIL=PATH           time this binary instead of building
#                            target/release/ccos-jail
#   CCOS_BENCH_REQUIRE_JAIL=1  fail (instead of leaving the row out) when
#                            ccos-jail does not build or does not run
#   CCOS_BENCH_OFFLINE=1     no apt-get, `cargo build --offline`
#
# Outputs (bench/work/ is git-ignored): spawn.json (hyperfine), meta.json,
# check.txt (what each contender's jail looks like from inside), spawn.md.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
WORK=$BENCH/work
RUNS=${RUNS:-400}
WARMUP=${WARMUP:-20}
PY=/usr/bin/python3 # Debian's: python3-seccomp is only visible to it
HOSTNAME_IN_JAIL=ccos
ETC_FILES=(/etc/passwd /etc/group /etc/hosts /etc/ld.so.cache)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'spawn.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Phase 1, in the caller's namespaces: packages, build, then re-exec.
# ---------------------------------------------------------------------------
if [[ -z ${CCOS_BENCH_IN_NS:-} ]]; then
    [[ $(id -u) == 0 ]] || die "run as root (crun and the cgroup view need it)"

    # Debian packages, only those missing. hyperfine/bwrap/crun: contenders
    # and timer; python3-seccomp: compiles bwrap's BPF; util-linux (unshare)
    # and python3 are already on every Debian system (python3-seccomp pulls
    # python3 in anyway).
    need=()
    command -v hyperfine >/dev/null || need+=(hyperfine)
    command -v bwrap >/dev/null || need+=(bubblewrap)
    command -v crun >/dev/null || need+=(crun)
    command -v unshare >/dev/null || need+=(util-linux)
    [[ -x $PY ]] && $PY -c 'import seccomp' 2>/dev/null || need+=(python3-seccomp)
    if ((${#need[@]})); then
        [[ -z ${CCOS_BENCH_OFFLINE:-} ]] || die "missing packages: ${need[*]} (CCOS_BENCH_OFFLINE is set)"
        log "apt-get install ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi

    # ccos-jail, unless a binary was given.
    if [[ -z ${CCOS_JAIL:-} ]]; then
        CCOS_JAIL=$ROOT/target/release/ccos-jail
        offline=()
        [[ -z ${CCOS_BENCH_OFFLINE:-} ]] || offline=(--offline)
        log "cargo build --release -p ccos-jail ${offline[*]}"
        if ! (cd "$ROOT" && cargo build --release -p ccos-jail "${offline[@]}"); then
            [[ -z ${CCOS_BENCH_REQUIRE_JAIL:-} ]] || die "ccos-jail does not build"
            log "ccos-jail does not build: its row is left out"
            CCOS_JAIL=
        fi
    fi
    export CCOS_JAIL RUNS WARMUP

    # crun (1.8) refuses a hybrid cgroup host whose v2 hierarchy holds a
    # controller (this one: hugetlb), and with cgroupfs it makes its cgroups
    # at the root of every hierarchy, outside the caller's own cgroup. So the
    # timing runs in a private mount + cgroup namespace where each v1
    # hierarchy is seen from the caller's own cgroup (the view a container
    # gets) and the v2 mount is shadowed by a throwaway tmpfs. Nothing of it
    # is visible outside; every contender, references included, runs in it.
    mode=v1
    [[ $(stat -f -c %T /sys/fs/cgroup) == cgroup2fs ]] && mode=v2
    if [[ $mode == v2 ]]; then
        # Pure v2 host: crun needs no help; no view is set up (untested here).
        export CCOS_BENCH_IN_NS=none
        exec bash "${BASH_SOURCE[0]}" "$@"
    fi
    CCOS_BENCH_OWN_CGROUPS=$(cat /proc/self/cgroup)
    export CCOS_BENCH_OWN_CGROUPS CCOS_BENCH_IN_NS=1
    exec unshare --mount --cgroup --propagation private -- bash "${BASH_SOURCE[0]}" "$@"
fi

# ---------------------------------------------------------------------------
# Phase 2, inside the benchmark's namespaces.
# ---------------------------------------------------------------------------
if [[ $CCOS_BENCH_IN_NS == 1 ]]; then
    # v1 hierarchies: bind our own cgroup over the hierarchy's mount point.
    # v2 in hybrid mode: shadow it.
    while read -r mnt fstype opts; do
        if [[ $fstype == cgroup2 ]]; then
            umount "$mnt"
            mount -t tmpfs -o size=1m,mode=755 ccos-bench "$mnt"
            continue
        fi
        own=
        IFS=, read -ra ctrls <<<"$opts"
        while IFS=: read -r _ list path; do
            IFS=, read -ra have <<<"$list"
            for c in "${ctrls[@]}"; do
                for h in "${have[@]}"; do [[ -n $c && $h == "$c" ]] && own=$path; done
            done
        done <<<"$CCOS_BENCH_OWN_CGROUPS"
        if [[ -n $own && $own != / ]]; then mount --bind "$mnt$own" "$mnt"; fi
    done < <(awk '{ for (i = 7; $i != "-"; i++); if ($(i+1) ~ /^cgroup2?$/) print $5, $(i+1), $(i+3) }' /proc/self/mountinfo)
fi

mkdir -p "$WORK"
cd "$ROOT"

# Fixtures: bwrap's compiled seccomp program, crun's bundles.
log "fixtures in $WORK"
$PY "$BENCH/fixtures.py" "$WORK" "$HOSTNAME_IN_JAIL" "${ETC_FILES[@]}"
BPF=$WORK/seccomp.bpf

# crun's state lives in /run/crun (its default); it must hold no container of
# ours when we are done, and goes away if it was not there before.
RUN_CRUN_EXISTED=0
[[ -d /run/crun ]] && RUN_CRUN_EXISTED=1
CRUN_ID=ccos-bench-$$
CRUN_ID_NOCG=ccos-bench-nocg-$$
cleanup() {
    local id
    for id in "$CRUN_ID" "$CRUN_ID_NOCG" "$CRUN_ID-check" "$CRUN_ID_NOCG-check"; do
        crun delete -f "$id" >/dev/null 2>&1 || true
    done
    if [[ $RUN_CRUN_EXISTED == 0 ]]; then rmdir /run/crun 2>/dev/null || true; fi
}
trap cleanup EXIT

# The contenders. Each is an argv run by hyperfine without a shell (-N),
# through the same wrapper:  /bin/sh -c 'exec "$@" 3<"$0"' BPF ARGV...
# (dash opens fd 3 on the BPF file and execs ARGV: no fork). The wrapper is
# there because bwrap --seccomp reads its program from an fd to EOF, so it
# needs the file opened afresh for every run; every other contender gets the
# same wrapper, and the same stray fd 3, so that they pay the same. The
# "true, bare" row is /bin/true with no wrapper: the wrapper's own cost.
WRAP=(/bin/sh -c 'exec "$@" 3<"$0"' "$BPF")

BWRAP=(bwrap --unshare-all --unshare-user --die-with-parent --cap-drop ALL
    --hostname "$HOSTNAME_IN_JAIL" --ro-bind /usr /usr)
for top in bin sbin lib lib64; do
    if [[ -L /$top ]]; then BWRAP+=(--symlink "$(readlink "/$top")" "/$top")
    elif [[ -d /$top ]]; then BWRAP+=(--ro-bind "/$top" "/$top"); fi
done
BWRAP+=(--proc /proc --dev /dev --tmpfs /tmp)
for f in "${ETC_FILES[@]}"; do BWRAP+=(--ro-bind "$f" "$f"); done
BWRAP+=(--seccomp 3)

JAIL=()
[[ -n $CCOS_JAIL ]] && JAIL=("$CCOS_JAIL" run --)
CRUN_PRE=(crun run)
CRUN_NOCG_PRE=(crun --cgroup-manager=disabled run)
CRUN=("${CRUN_PRE[@]}" --bundle "$WORK/crun" "$CRUN_ID")
CRUN_NOCG=("${CRUN_NOCG_PRE[@]}" --bundle "$WORK/crun" "$CRUN_ID_NOCG")
UNSHARE=(unshare --user --map-root-user --pid --fork --mount --net --uts --ipc --cgroup)

# --- Sanity: each contender runs /bin/true with exit 0, and a probe shows
# what its jail looks like from inside (check.txt). -------------------------
PROBE='for n in user pid mnt net uts ipc cgroup; do printf "%s=%s " $n "$(readlink /proc/self/ns/$n)"; done; echo
grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr -s "\t\n" "  "; echo
echo "pid=$$ hostname=$(cat /proc/sys/kernel/hostname) uid_map=[$(tr -s " " </proc/self/uid_map)]"
echo "root: $(ls -A / | tr "\n" " ")"
echo "cgroup: $(grep -E "^[0-9]+:(memory|pids|cpu,cpuacct|cpu)?:" /proc/self/cgroup | tr "\n" " ")"'
host_ns=$(for n in user pid mnt net uts ipc cgroup; do printf "%s=%s " $n "$(readlink /proc/self/ns/$n)"; done)

# run_check NAME ARGV... : ARGV runs the program given after it.
CHECK=$WORK/check.txt
: >"$CHECK"
run_check() {
    local name=$1 out err; shift
    err=$WORK/check-$name.err
    if ! "${WRAP[@]}" "$@" /bin/true </dev/null >/dev/null 2>"$err"; then
        log "$name: '$* /bin/true' failed:"; cat "$err" >&2; return 1
    fi
    out=$("${WRAP[@]}" "$@" /bin/sh -c "$PROBE" </dev/null 2>>"$err") || true
    {
        echo "## $name"
        # Namespaces: which are new compared to the benchmark's own.
        local new=() same=() kv
        for kv in ${out%%$'\n'*}; do
            if [[ " $host_ns " == *" $kv "* ]]; then same+=("${kv%%=*}"); else new+=("${kv%%=*}"); fi
        done
        echo "new namespaces: ${new[*]:-none}; shared: ${same[*]:-none}"
        tail -n +2 <<<"$out"
        echo
    } >>"$CHECK"
}
# crun's probe needs its own bundle (the argv is in config.json).
# crun_check NAME ID CRUN-ARGV-BEFORE-BUNDLE...
crun_check() {
    local name=$1 id=$2; shift 2
    $PY - "$WORK/crun/config.json" "$WORK/crun-check/config.json" "$PROBE" <<'EOF'
import json, os, sys
src, dst, probe = sys.argv[1:4]
c = json.load(open(src))
c["process"]["args"] = ["/bin/sh", "-c", probe]
c["root"]["path"] = os.path.join(os.path.dirname(src), "rootfs")
os.makedirs(os.path.dirname(dst), exist_ok=True)
json.dump(c, open(dst, "w"), indent=2)
EOF
    local err=$WORK/check-$name.err out
    if ! "${WRAP[@]}" "$@" --bundle "$WORK/crun" "$id" </dev/null >/dev/null 2>"$err"; then
        log "$name: '$* --bundle $WORK/crun $id' failed:"; cat "$err" >&2; return 1
    fi
    out=$("${WRAP[@]}" "$@" --bundle "$WORK/crun-check" "$id-check" </dev/null 2>>"$err") || true
    {
        echo "## $name"
        local new=() same=() kv
        for kv in ${out%%$'\n'*}; do
            if [[ " $host_ns " == *" $kv "* ]]; then same+=("${kv%%=*}"); else new+=("${kv%%=*}"); fi
        done
        echo "new namespaces: ${new[*]:-none}; shared: ${same[*]:-none}"
        tail -n +2 <<<"$out"
        echo
    } >>"$CHECK"
}

log "sanity checks"
cg_before=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d 2>/dev/null | sort)
if ((${#JAIL[@]})) && ! run_check ccos-jail "${JAIL[@]}"; then
    [[ -z ${CCOS_BENCH_REQUIRE_JAIL:-} ]] || die "ccos-jail run -- /bin/true fails"
    log "ccos-jail does not run: its row is left out"
    JAIL=()
fi
run_check bwrap "${BWRAP[@]}" || die "bwrap fails"
crun_check crun "$CRUN_ID" "${CRUN_PRE[@]}" || die "crun fails"
crun_check crun-nocgroup "$CRUN_ID_NOCG" "${CRUN_NOCG_PRE[@]}" || die "crun --cgroup-manager=disabled fails"
run_check unshare "${UNSHARE[@]}" || die "unshare fails"
cat "$CHECK" >&2

# --- Timing ----------------------------------------------------------------
# hyperfine -N takes each command as one string split like a shell would;
# quote every word.
q() { local out= w; for w in "$@"; do out+=" $(printf '%q' "$w")"; done; printf '%s' "${out# }"; }
cmds=()
((${#JAIL[@]})) && cmds+=(-n ccos-jail "$(q "${WRAP[@]}" "${JAIL[@]}" /bin/true)")
cmds+=(
    -n bwrap "$(q "${WRAP[@]}" "${BWRAP[@]}" /bin/true)"
    -n crun "$(q "${WRAP[@]}" "${CRUN[@]}")"
    -n "crun, no cgroup" "$(q "${WRAP[@]}" "${CRUN_NOCG[@]}")"
    -n unshare "$(q "${WRAP[@]}" "${UNSHARE[@]}" /bin/true)"
    -n true "$(q "${WRAP[@]}" /bin/true)"
    -n "true, bare" /bin/true
)
# printf %q may emit $'..' quoting, which hyperfine's splitter does not know.
for c in "${cmds[@]}"; do [[ $c != *"\$'"* ]] || die "cannot quote for hyperfine: $c"; done

# What was run, for the report.
$PY - "$WORK/meta.json" "$CCOS_BENCH_IN_NS" "$RUNS" "$WARMUP" \
    "$(hyperfine --version | awk '{print $2}')" "$(bwrap --version | awk '{print $2}')" \
    "$(crun --version | awk 'NR==1 {print $3}')" "$(unshare --version | awk '{print $NF}')" \
    "$( ((${#JAIL[@]})) && (git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "no commit yet") || echo none)" \
    "${cmds[@]}" <<'EOF'
import datetime, json, os, platform, sys
out, view, runs, warmup, hf, bw, cr, un, jail, *cmds = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(),
    "cgroup_view": view, "runs": int(runs), "warmup": int(warmup),
    "versions": {"hyperfine": hf, "bwrap": bw, "crun": cr, "unshare": un, "ccos-jail": jail},
    "commands": {cmds[i + 1]: cmds[i + 2] for i in range(0, len(cmds), 3)},
}
json.dump(meta, open(out, "w"), indent=2)
EOF

log "hyperfine: $RUNS runs, $WARMUP warmup, no shell (-N)"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --time-unit millisecond \
    --export-json "$WORK/spawn.json" "${cmds[@]}"

# --- Leftovers -------------------------------------------------------------
leftover=$(ls /run/crun 2>/dev/null | grep -E "^ccos-bench" || true)
[[ -z $leftover ]] || die "crun state left in /run/crun: $leftover"
cg_after=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d 2>/dev/null | sort)
cg_new=$(comm -13 <(echo "$cg_before") <(echo "$cg_after") | grep -v '^/sys/fs/cgroup/unified/' || true)
[[ -z $cg_new ]] || log "WARNING: cgroups left behind: $cg_new"

$PY "$BENCH/report.py" "$WORK"
