#!/usr/bin/env bash
# Spawn latency of `ccos-jail run -- /bin/true` next to bubblewrap, crun and
# two floor references, side by side in hyperfine rounds. See bench/README.md.
#
# usage: bench/spawn.sh            (as root; Debian 12)
#
# environment:
#   RUNS=400 WARMUP=20       hyperfine runs and warmup runs per contender
#   ROUNDS=40                the runs are split into this many hyperfine
#                            rounds, each in another order (see below)
#   ROUND_WARMUP=2           warmup runs per contender in rounds after the
#                            first
#   CCOS_JAIL=PATH           time this binary instead of building
#                            ccos-jail (statically linked, jail/build-static.sh)
#   CCOS_JAIL_DYNAMIC=PATH   with CCOS_JAIL: also time this one, as the row
#                            "ccos-jail, dynamic" (built by default:
#                            target/release/ccos-jail from `cargo build`)
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
ROUNDS=${ROUNDS:-40}
ROUND_WARMUP=${ROUND_WARMUP:-2}
PY=/usr/bin/python3 # Debian's: python3-seccomp is only visible to it
# ccos-jail's default profile: bwrap and crun take its hostname, uid/gid,
# /tmp size (and crun its cgroup limits and rlimits) from it.
PROFILE=$ROOT/policies/default.toml
# What of /etc the jails get, bound read-only from the host: ccos-jail's list
# (jail/src/mount.rs ETC_BINDS), plus passwd, group, hosts and nsswitch.conf,
# which ccos-jail writes itself into its tmpfs /etc.
ETC_WANT=(/etc/ld.so.cache /etc/ld.so.conf /etc/ld.so.conf.d /etc/alternatives
    /etc/ssl /etc/ca-certificates /etc/localtime
    /etc/passwd /etc/group /etc/hosts /etc/nsswitch.conf)
ETC_FILES=()
for f in "${ETC_WANT[@]}"; do [[ -e $f ]] && ETC_FILES+=("$f"); done

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

    # ccos-jail, unless a binary was given: statically linked, as the
    # README says to install it (jail/build-static.sh), and the
    # dynamically linked one `cargo build` makes, timed as a row of its own.
    offline=()
    [[ -z ${CCOS_BENCH_OFFLINE:-} ]] || offline=(--offline)
    if [[ -z ${CCOS_JAIL:-} ]]; then
        log "jail/build-static.sh ${offline[*]}"
        if CCOS_JAIL=$("$ROOT/jail/build-static.sh" "${offline[@]}" | tail -n 1); then
            log "cargo build --release -p ccos-jail ${offline[*]}"
            (cd "$ROOT" && cargo build --release -p ccos-jail "${offline[@]}") &&
                CCOS_JAIL_DYNAMIC=$ROOT/target/release/ccos-jail
        else
            [[ -z ${CCOS_BENCH_REQUIRE_JAIL:-} ]] || die "ccos-jail does not build"
            log "ccos-jail does not build: its row is left out"
            CCOS_JAIL=
        fi
    fi
    export CCOS_JAIL_DYNAMIC=${CCOS_JAIL_DYNAMIC:-}
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
$PY "$BENCH/fixtures.py" "$WORK" "$PROFILE" "${ETC_FILES[@]}"
BPF=$WORK/seccomp.bpf
# shellcheck source=/dev/null
source "$WORK/profile.env" # PROFILE_HOSTNAME PROFILE_UID PROFILE_GID PROFILE_TMP_SIZE

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
# shellcheck disable=SC2016 # expanded by that sh, not here
WRAP=(/bin/sh -c 'exec "$@" 3<"$0"' "$BPF")

BWRAP=(bwrap --unshare-all --unshare-user --die-with-parent --cap-drop ALL
    --uid "$PROFILE_UID" --gid "$PROFILE_GID" --hostname "$PROFILE_HOSTNAME"
    --ro-bind /usr /usr)
for top in bin sbin lib lib64; do
    if [[ -L /$top ]]; then BWRAP+=(--symlink "$(readlink "/$top")" "/$top")
    elif [[ -d /$top ]]; then BWRAP+=(--ro-bind "/$top" "/$top"); fi
done
BWRAP+=(--proc /proc --dev /dev --size "$PROFILE_TMP_SIZE" --tmpfs /tmp)
for f in "${ETC_FILES[@]}"; do BWRAP+=(--ro-bind "$f" "$f"); done
BWRAP+=(--seccomp 3)

JAIL=()
[[ -n $CCOS_JAIL ]] && JAIL=("$CCOS_JAIL" run --)
JAIL_DYNAMIC=()
[[ -n $CCOS_JAIL && -n $CCOS_JAIL_DYNAMIC ]] && JAIL_DYNAMIC=("$CCOS_JAIL_DYNAMIC" run --)
CRUN_PRE=(crun run)
CRUN_NOCG_PRE=(crun --cgroup-manager=disabled run)
CRUN=("${CRUN_PRE[@]}" --bundle "$WORK/crun" "$CRUN_ID")
CRUN_NOCG=("${CRUN_NOCG_PRE[@]}" --bundle "$WORK/crun" "$CRUN_ID_NOCG")
UNSHARE=(unshare --user --map-root-user --pid --fork --mount --net --uts --ipc --cgroup)

# --- Sanity: each contender runs /bin/true with exit 0, and a probe shows
# what its jail looks like from inside (check.txt). -------------------------
# shellcheck disable=SC2016 # expanded by the jailed sh
PROBE='if [ -e /proc/self/fd/3 ]; then fd3="open (leaked from the caller)"; else fd3=closed; fi
for n in user pid mnt net uts ipc cgroup; do printf "%s=%s " $n "$(readlink /proc/self/ns/$n)"; done; echo
grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr -s "\t\n" "  "; echo
echo "pid=$$ uid=$(id -u) gid=$(id -g) hostname=$(cat /proc/sys/kernel/hostname) uid_map=[$(tr -s " " </proc/self/uid_map)]"
echo "/: $(ls -A / | tr "\n" " ")"
if [ ! -d /etc ]; then echo "/etc: none"; elif [ "$(ls -A /etc | wc -l)" -gt 20 ]; then echo "/etc: the host'"'"'s ($(ls -A /etc | wc -l) entries)"; else echo "/etc: $(ls -A /etc | tr "\n" " ")"; fi
echo "rlimits: $(sed -n "s/^Max open files *\([0-9a-z]*\).*/nofile=\1/p; s/^Max processes *\([0-9a-z]*\).*/nproc=\1/p" /proc/self/limits | tr "\n" " ")/tmp: $(df -k /tmp | sed -n "2s/^[^ ]* *\([0-9]*\).*/\1k/p")"
echo "the wrapper'"'"'s fd 3: $fd3"'
host_ns=$(for n in user pid mnt net uts ipc cgroup; do printf "%s=%s " $n "$(readlink /proc/self/ns/$n)"; done)

# record NAME PROBE-OUTPUT: appends to check.txt, with the namespaces told
# as new or shared compared to the benchmark's own.
CHECK=$WORK/check.txt
: >"$CHECK"
record() {
    local name=$1 out=$2 new=() same=() kv
    for kv in ${out%%$'\n'*}; do
        if [[ " $host_ns " == *" $kv "* ]]; then same+=("${kv%%=*}"); else new+=("${kv%%=*}"); fi
    done
    {
        echo "## $name"
        echo "new namespaces: ${new[*]:-none}; shared: ${same[*]:-none}"
        tail -n +2 <<<"$out"
        echo
    } >>"$CHECK"
}
# run_check NAME ARGV... : ARGV runs the program given after it.
run_check() {
    local name=$1 out err; shift
    err=$WORK/check-$name.err
    if ! "${WRAP[@]}" "$@" /bin/true </dev/null >/dev/null 2>"$err"; then
        log "$name: '$* /bin/true' failed:"; cat "$err" >&2; return 1
    fi
    out=$("${WRAP[@]}" "$@" /bin/sh -c "$PROBE" </dev/null 2>>"$err") || true
    record "$name" "$out"
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
    record "$name" "$out"
}

log "sanity checks"
cg_before=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d 2>/dev/null | sort)
if ((${#JAIL[@]})) && ! run_check ccos-jail "${JAIL[@]}"; then
    [[ -z ${CCOS_BENCH_REQUIRE_JAIL:-} ]] || die "ccos-jail run -- /bin/true fails"
    log "ccos-jail does not run: its row is left out"
    JAIL=()
fi
if ((${#JAIL_DYNAMIC[@]})) && ! run_check ccos-jail-dynamic "${JAIL_DYNAMIC[@]}"; then
    log "the dynamically linked ccos-jail does not run: its row is left out"
    JAIL_DYNAMIC=()
fi
run_check bwrap "${BWRAP[@]}" || die "bwrap fails"
crun_check crun "$CRUN_ID" "${CRUN_PRE[@]}" || die "crun fails"
crun_check crun-nocgroup "$CRUN_ID_NOCG" "${CRUN_NOCG_PRE[@]}" || die "crun --cgroup-manager=disabled fails"
run_check unshare "${UNSHARE[@]}" || die "unshare fails"
cat "$CHECK" >&2

# --- Timing ----------------------------------------------------------------
# hyperfine -N takes each command as one string and splits it like a shell
# would (shell-words): single-quote every word that needs it.
q() {
    local out='' w sq="'" esc="'\\''"
    for w in "$@"; do
        if [[ $w =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then out+=" $w"; else out+=" '${w//$sq/$esc}'"; fi
    done
    printf '%s' "${out# }"
}
cmds=()
((${#JAIL[@]})) && cmds+=(-n ccos-jail "$(q "${WRAP[@]}" "${JAIL[@]}" /bin/true)")
((${#JAIL_DYNAMIC[@]})) && cmds+=(-n "ccos-jail, dynamic" "$(q "${WRAP[@]}" "${JAIL_DYNAMIC[@]}" /bin/true)")
cmds+=(
    -n bwrap "$(q "${WRAP[@]}" "${BWRAP[@]}" /bin/true)"
    -n crun "$(q "${WRAP[@]}" "${CRUN[@]}")"
    -n "crun, no cgroup" "$(q "${WRAP[@]}" "${CRUN_NOCG[@]}")"
    -n unshare "$(q "${WRAP[@]}" "${UNSHARE[@]}" /bin/true)"
    -n true "$(q "${WRAP[@]}" /bin/true)"
    -n "true, bare" /bin/true
)

# What was run, for the report.
$PY - "$WORK/meta.json" "$CCOS_BENCH_IN_NS" "$((RUNS / ROUNDS * ROUNDS))" "$WARMUP" "$ROUNDS" \
    "$(hyperfine --version | awk '{print $2}')" "$(bwrap --version | awk '{print $2}')" \
    "$(crun --version | awk 'NR==1 {print $3}')" "$(unshare --version | awk '{print $NF}')" \
    "$( ((${#JAIL[@]})) && (git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "no commit yet") || echo none)" \
    "${cmds[@]}" <<'EOF'
import datetime, json, os, platform, sys
out, view, runs, warmup, rounds, hf, bw, cr, un, jail, *cmds = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(),
    "cgroup_view": view, "runs": int(runs), "warmup": int(warmup), "rounds": int(rounds),
    "versions": {"hyperfine": hf, "bwrap": bw, "crun": cr, "unshare": un, "ccos-jail": jail},
    "commands": {cmds[i + 1]: cmds[i + 2] for i in range(0, len(cmds), 3)},
}
json.dump(meta, open(out, "w"), indent=2)
EOF

# Is anything else using the CPUs? (Share of CPU time busy over 1 s; the
# load average would still count our own cargo build.)
busy_pct() {
    local _c u1 n1 s1 i1 w1 q1 sq1 st1 u2 n2 s2 i2 w2 q2 sq2 st2
    read -r _c u1 n1 s1 i1 w1 q1 sq1 st1 _ </proc/stat
    sleep 1
    read -r _c u2 n2 s2 i2 w2 q2 sq2 st2 _ </proc/stat
    local busy=$(((u2 + n2 + s2 + q2 + sq2 + st2) - (u1 + n1 + s1 + q1 + sq1 + st1)))
    local idle=$(((i2 + w2) - (i1 + w1)))
    echo $((100 * busy / (busy + idle > 0 ? busy + idle : 1)))
}
busy=$(busy_pct)
echo "$busy" >"$WORK/busy-before.txt"
if ((busy > 10)); then
    log "WARNING: the CPUs were ${busy}% busy just before timing: something else is running; figures will be noisy"
fi
# hyperfine times one contender's runs, then the next's: a background burst
# (writeback, a kernel worker, another VM on the host) lands on whichever
# row is running, and this VM's speed drifts by tens of percent within
# seconds. So the runs are split into many short rounds (10 runs each by
# default, under a second per round), each starting one contender further
# down the list, and their times are pooled: a burst or a slow spell then
# falls on every row alike, not on one. With 4 rounds of 100 the pooled
# ratio of two builds came out 0.1 from what runs alternated one by one
# gave.
((ROUNDS >= 1 && RUNS >= ROUNDS)) || die "ROUNDS=$ROUNDS: must be 1..RUNS"
rm -f "$WORK"/spawn-round-*.json
n=$((${#cmds[@]} / 3))
for ((round = 0; round < ROUNDS; round++)); do
    first=$((round % n * 3))
    order=("${cmds[@]:first}" "${cmds[@]:0:first}")
    # The full warmup once; later rounds only refill the caches the other
    # contenders evicted.
    warmup=$((round == 0 ? WARMUP : ROUND_WARMUP))
    log "hyperfine round $((round + 1))/$ROUNDS: $((RUNS / ROUNDS)) runs, $warmup warmup, no shell (-N), from \"${order[1]}\""
    hyperfine -N --warmup "$warmup" --runs $((RUNS / ROUNDS)) --time-unit millisecond \
        --export-json "$WORK/spawn-round-$round.json" "${order[@]}"
done
# Pooled into one hyperfine-shaped file: every run's time, and the mean
# CPU time weighted by runs.
$PY - "$WORK/spawn.json" "$WORK"/spawn-round-*.json <<'EOF'
import json, sys
out, *rounds = sys.argv[1:]
pooled = {}
for path in rounds:
    for r in json.load(open(path))["results"]:
        p = pooled.setdefault(r["command"], {"command": r["command"], "times": [], "user": 0.0, "system": 0.0})
        n = len(r["times"])
        p["times"] += r["times"]
        p["user"] += r["user"] * n
        p["system"] += r["system"] * n
for p in pooled.values():
    p["user"] /= len(p["times"])
    p["system"] /= len(p["times"])
json.dump({"results": list(pooled.values())}, open(out, "w"), indent=1)
EOF

# --- Where ccos-jail's time goes --------------------------------------------
# Each run's --report-json carries its phases (profile and seccomp compile,
# cgroup, clone, set-up to execve, run, teardown); report.py prints medians.
rm -rf "$WORK/phases"
if [[ -n $CCOS_JAIL ]]; then
    mkdir -p "$WORK/phases"
    log "ccos-jail phases: 200 runs with --report-json"
    for i in $(seq 200); do
        "$CCOS_JAIL" run --report-json "$WORK/phases/$i.json" -- /bin/true
    done
fi

# --- Leftovers -------------------------------------------------------------
leftover=$(shopt -s nullglob; echo /run/crun/ccos-bench*)
[[ -z $leftover ]] || die "crun state left in /run/crun: $leftover"
cg_after=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d 2>/dev/null | sort)
# ccos-jail's parent folders (<hierarchy>/ccos) stay, like systemd's slices;
# a run's own group (ccos/jail-<pid>) must not.
cg_new=$(comm -13 <(echo "$cg_before") <(echo "$cg_after") | grep -v '^/sys/fs/cgroup/unified/' | grep -v '/ccos$' || true)
[[ -z $cg_new ]] || log "WARNING: cgroups left behind: $cg_new"

busy=$(busy_pct)
$PY - "$WORK/meta.json" "$(cat "$WORK/busy-before.txt")" "$busy" <<'EOF'
import json, sys
path, before, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
meta = json.load(open(path))
meta["cpu_busy_pct"] = {"before": before, "after": after}
json.dump(meta, open(path, "w"), indent=2)
EOF
rm -f "$WORK/busy-before.txt"
((busy <= 10)) || log "WARNING: the CPUs were ${busy}% busy just after timing: figures may be noisy"

$PY "$BENCH/report.py" "$WORK"
