#!/usr/bin/env bash
# Runs the cgroup v2 tests in a Linux kernel booted under QEMU (TCG).
# See tests/vm/README.md. Usage: tests/vm/run.sh [ARGS FOR EVERY TEST EXECUTABLE]
# e.g. tests/vm/run.sh oom --nocapture
set -euo pipefail
[ "${1:-}" = -- ] && shift

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

# Settings (environment):
#   VM_MANIFEST      Cargo.toml of the workspace or package to test ($repo/Cargo.toml)
#   VM_TESTS         integration-test target names (default: `cgroup`, every `vm_*`, and
#                    every test whose leading //! comment mentions tests/vm)
#   VM_TARGET_DIR    cargo target dir (default ${CARGO_TARGET_DIR:-<workspace>/target}/vm)
#   VM_WORK          work dir: kernel, initramfs, serial.log ($here/work)
#   VM_KERNEL_PKG    kernel package (default: newest linux-image-*-cloud-amd64)
#   VM_TIMEOUT       seconds for the whole boot (600)
#   VM_TEST_TIMEOUT  seconds for each test executable, in the guest (300)
#   VM_MEM, VM_SMP   guest memory (1G) and CPUs (2)
#   VM_ACCEL         QEMU accelerator (tcg,thread=multi; KVM does not work here)
#   VM_CGROUP        run the tests in this cgroup (e.g. /system.slice/ccos.service,
#                    as under systemd) instead of the root cgroup
# CCOS_* and RUST_LOG are passed to the guest; CI=true and CCOS_TEST_SLOW=1 are set.
manifest=${VM_MANIFEST:-$repo/Cargo.toml}
work=${VM_WORK:-$here/work}
vm_timeout=${VM_TIMEOUT:-600}
target=x86_64-unknown-linux-gnu

log() { printf 'vm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
t_start=$SECONDS
step_t=$SECONDS
step() { log "$1 ($((SECONDS - step_t)) s)"; step_t=$SECONDS; }

mkdir -p "$work"

# --- 1. Host packages ---------------------------------------------------------

apt_updated=false
apt_update() {
	$apt_updated && return 0
	[ "$(id -u)" = 0 ] || die "need root to run apt-get (or install: $*)"
	log "apt-get update"
	apt-get update -qq
	apt_updated=true
}

pkg_installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
pkg_installed busybox-static || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}; run as root or install them"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
		apt_update "${missing[*]}"
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	}
	log "installed ${missing[*]}"
fi
busybox=$(dpkg-query -L busybox-static | grep -m1 -E '/bin/busybox$')
[ -x "$busybox" ] || die "busybox-static installed but no busybox binary"
command -v python3 >/dev/null || die "python3 is needed"

# --- 2. Kernel ----------------------------------------------------------------

newest_kernel_pkg() {
	apt-cache search --names-only '^linux-image-[0-9].*-cloud-amd64$' 2>/dev/null |
		awk '{print $1}' | grep -E '^linux-image-[0-9][^ ]*-cloud-amd64$' | sort -V | tail -n 1
}

kernel_pkg=${VM_KERNEL_PKG:-}
if [ -z "$kernel_pkg" ]; then
	kernel_pkg=$(newest_kernel_pkg || true)
	if [ -z "$kernel_pkg" ] && ! compgen -G "$work/linux-image-*.deb" >/dev/null; then
		apt_update linux-image-cloud-amd64
		kernel_pkg=$(newest_kernel_pkg || true)
	fi
fi
kernel_deb=
if [ -n "$kernel_pkg" ]; then
	kernel_deb=$(compgen -G "$work/${kernel_pkg}_*.deb" | sort -V | tail -n 1 || true)
	if [ -z "$kernel_deb" ]; then
		log "downloading $kernel_pkg"
		get() { (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$kernel_pkg"); }
		get || { apt_update "$kernel_pkg" && get; } || log "warning: cannot download $kernel_pkg"
		kernel_deb=$(compgen -G "$work/${kernel_pkg}_*.deb" | sort -V | tail -n 1 || true)
	fi
fi
if [ -z "$kernel_deb" ]; then
	# Offline, or the package list is gone: reuse any earlier download.
	kernel_deb=$(compgen -G "$work/linux-image-*.deb" | sort -V | tail -n 1 || true)
	[ -n "$kernel_deb" ] || die "no kernel package (${kernel_pkg:-none found by apt-cache})"
	log "warning: reusing $(basename "$kernel_deb")"
fi
kdir=$work/kernel/$(basename "$kernel_deb" .deb)
if [ ! -e "$kdir/.unpacked" ]; then
	rm -rf "$kdir"
	mkdir -p "$kdir"
	dpkg-deb -x "$kernel_deb" "$kdir"
	touch "$kdir/.unpacked"
fi
vmlinuz=$(compgen -G "$kdir/boot/vmlinuz-*" | head -n 1 || true)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $kernel_deb"
step "kernel $(basename "$vmlinuz")"

# --- 3. Static test binaries --------------------------------------------------

if command -v rustup >/dev/null; then
	rustup target list --installed | grep -qx "$target" || rustup target add "$target"
fi

# Workspace root, target dir, and which test targets to build.
meta=$(cargo metadata --format-version 1 --no-deps --manifest-path "$manifest")
ws_root=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["workspace_root"])' <<<"$meta")
tdir=${VM_TARGET_DIR:-${CARGO_TARGET_DIR:-$ws_root/target}/vm}
if [ -n "${VM_TESTS:-}" ]; then
	read -r -a tests <<<"$VM_TESTS"
else
	# `cgroup`, `vm_*`, and any test whose leading //! comment names tests/vm.
	mapfile -t tests < <(python3 -c '
import json, sys
def opts_in(path):
    try:
        with open(path) as f:
            for line in f:
                if not line.startswith("//!"):
                    return False
                if "tests/vm" in line:
                    return True
    except OSError:
        pass
    return False
meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
for p in meta["packages"]:
    if p["id"] in members:
        for t in p["targets"]:
            if "test" in t["kind"] and (t["name"] == "cgroup" or t["name"].startswith("vm_") or opts_in(t["src_path"])):
                print(t["name"])' <<<"$meta" | sort -u)
fi
[ ${#tests[@]} -gt 0 ] || die "no test targets (cgroup or vm_*) in $manifest"
log "test targets: ${tests[*]}"

export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
export CARGO_TARGET_DIR=$tdir
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET
cargo_json() { cargo "$@" --target "$target" --manifest-path "$manifest" --message-format=json-render-diagnostics; }

# Prints "kind<TAB>name<TAB>executable<TAB>package dir" for each artifact.
artifacts() {
	python3 -c '
import json, os, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    kind = "test" if m["profile"]["test"] else "bin"
    if kind == "bin" and "bin" not in m["target"]["kind"]:
        continue
    print("\t".join([kind, m["target"]["name"], m["executable"], os.path.dirname(m["manifest_path"])]))'
}
test_args=()
for t in "${tests[@]}"; do test_args+=(--test "$t"); done
bins_out=$(cargo_json build --workspace --bins | artifacts)
tests_out=$(cargo_json test --no-run "${test_args[@]}" | artifacts | awk -F'\t' '$1 == "test"' | sort -t$'\t' -k2,2)
[ -n "$tests_out" ] || die "cargo built no test executables"
step "built $(wc -l <<<"$tests_out") test executable(s), $(grep -c . <<<"$bins_out" || true) binaries in $tdir"

# --- 4. Initramfs -------------------------------------------------------------
# Two concatenated archives: main (busybox, binaries; rebuilt only when an
# input changes) and run (init, settings; rebuilt every run, tiny).

# Files for the main archive: "source<TAB>destination in the guest".
# Binaries go to /usr/bin (what a jail sees, through its /usr bind mount) and
# to their host path (what CARGO_BIN_EXE_* and the test executables name).
files=$(
	printf '%s\t/usr/bin/busybox\n' "$busybox"
	while IFS=$'\t' read -r kind name exe dir; do
		[ -n "$exe" ] || continue
		[ "$kind" = bin ] && printf '%s\t/usr/bin/%s\n' "$exe" "$(basename "$exe")"
		printf '%s\t%s\n' "$exe" "$exe"
	done <<<"$bins_out"$'\n'"$tests_out"
)
# Data the tests may read relative to their package (fixtures, profiles).
data_dirs=()
[ -d "$ws_root/policies" ] && data_dirs+=("$ws_root/policies")
while IFS=$'\t' read -r kind name exe dir; do
	[ -d "$dir/tests" ] && data_dirs+=("$dir/tests")
done <<<"$tests_out"
mapfile -t data_dirs < <(printf '%s\n' "${data_dirs[@]}" | sort -u)
pkg_dirs=$(cut -f4 <<<"$tests_out" | sort -u)

fingerprint=$(
	{
		sha256sum "${BASH_SOURCE[0]}"
		printf '%s\n' "$files" "$pkg_dirs" "$tdir" "$vmlinuz"
		cut -f1 <<<"$files" | xargs -d '\n' stat -L -c '%n %s %Y'
		for d in "${data_dirs[@]}"; do find "$d" -printf '%p %s %T@\n'; done
	} | sha256sum | cut -d' ' -f1
)
main_cpio=$work/initramfs-main.cpio.gz
if [ ! -s "$main_cpio" ] || [ "$(cat "$work/initramfs-main.sum" 2>/dev/null)" != "$fingerprint" ]; then
	stage=$work/stage
	rm -rf "$stage"
	mkdir -p "$stage"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,root,tmp,run,proc,sys,dev,mnt,var,home}
	# Merged /usr, as on the Debian 12 production hosts.
	ln -s usr/bin "$stage/bin"
	ln -s usr/sbin "$stage/sbin"
	ln -s usr/lib "$stage/lib"
	ln -s usr/lib64 "$stage/lib64"
	ln -s ../run "$stage/var/run"
	chmod 1777 "$stage/tmp"
	chmod 0700 "$stage/root"
	strip_cmd=$(command -v strip || true)
	while IFS=$'\t' read -r src dst; do
		mkdir -p "$stage$(dirname "$dst")"
		cp -L "$src" "$stage$dst"
		# Debug info is most of a debug build; keep the symbols for backtraces.
		if [ -n "$strip_cmd" ] && [ "$dst" != /usr/bin/busybox ]; then
			"$strip_cmd" --strip-debug "$stage$dst" 2>/dev/null || true
		fi
	done <<<"$files"
	for applet in $("$busybox" --list-full); do
		# bin/ and sbin/ are links into usr/.
		case "$applet" in bin/* | sbin/*) applet=usr/$applet ;; esac
		[ -e "$stage/$applet" ] || [ -L "$stage/$applet" ] || ln -s /usr/bin/busybox "$stage/$applet"
	done
	# The dummy network driver, so the guest has an eth0 and a default route
	# like a real host (nothing leaves the VM: there is no NIC).
	dummy_ko=$(compgen -G "$kdir/lib/modules/*/kernel/drivers/net/dummy.ko*" | head -n 1 || true)
	if [ -n "$dummy_ko" ]; then
		kver=$(basename "$(dirname "$(dirname "$(dirname "$(dirname "$dummy_ko")")")")")
		mkdir -p "$stage/usr/lib/modules/$kver"
		python3 -c 'import lzma, sys
data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(lzma.decompress(data) if sys.argv[1].endswith(".xz") else data)' \
			"$dummy_ko" "$stage/usr/lib/modules/$kver/dummy.ko"
	fi
	while read -r dir; do mkdir -p "$stage$dir"; done <<<"$pkg_dirs"
	for d in "${data_dirs[@]}"; do
		mkdir -p "$stage$(dirname "$d")"
		cp -a "$d" "$stage$d"
	done
	mkdir -p "$stage$tdir/tmp" # CARGO_TARGET_TMPDIR
	cat >"$stage/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
	EOF
	cat >"$stage/etc/group" <<-'EOF'
		root:x:0:
		tty:x:5:
		shadow:x:42:
		nogroup:x:65534:
	EOF
	cat >"$stage/etc/hosts" <<-'EOF'
		127.0.0.1	localhost ccos-vm
		::1	localhost ip6-localhost ip6-loopback
	EOF
	printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' >"$stage/etc/shadow"
	chmod 0640 "$stage/etc/shadow"
	printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$stage/etc/nsswitch.conf"
	: >"$stage/etc/resolv.conf"
	echo ccos-vm >"$stage/etc/hostname"
	(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | "$busybox" cpio -H newc -o 2>/dev/null | gzip -1 >"$main_cpio.tmp")
	mv "$main_cpio.tmp" "$main_cpio"
	echo "$fingerprint" >"$work/initramfs-main.sum"
	rm -rf "$stage"
	step "packed $(basename "$main_cpio") ($(du -h "$main_cpio" | cut -f1))"
else
	step "reusing $(basename "$main_cpio")"
fi

run_stage=$work/stage-run
rm -rf "$run_stage"
mkdir -p "$run_stage/vm"
install -m 0755 "$here/init.sh" "$run_stage/init"
while IFS=$'\t' read -r kind name exe dir; do
	printf '%s\t%s\t%s\n' "$name" "$exe" "$dir"
done <<<"$tests_out" >"$run_stage/vm/tests"
printf '%s\n' "$@" | grep -v '^$' >"$run_stage/vm/args" || true
{
	# Passed through from the host: CCOS_* and RUST_LOG (then forced values).
	while IFS= read -r var; do
		printf 'export %s=%q\n' "$var" "${!var}"
	done < <(compgen -e | grep -E '^(CCOS_[A-Za-z0-9_]*|RUST_LOG)$' || true)
	printf 'export RUST_BACKTRACE=%q\n' "${RUST_BACKTRACE:-1}"
	printf 'export CI=true CCOS_TEST_SLOW=1 HOME=/root USER=root LOGNAME=root TMPDIR=/tmp LANG=C.UTF-8\n'
	printf 'export CARGO_TARGET_TMPDIR=%q\n' "$tdir/tmp"
	printf 'VM_TEST_TIMEOUT=%q\n' "${VM_TEST_TIMEOUT:-300}"
	printf 'VM_CGROUP=%q\n' "${VM_CGROUP:-}"
} >"$run_stage/vm/env"
(cd "$run_stage" && find . -mindepth 1 | LC_ALL=C sort | "$busybox" cpio -H newc -o 2>/dev/null | gzip -1) >"$work/initramfs-run.cpio.gz"
cat "$main_cpio" "$work/initramfs-run.cpio.gz" >"$work/initramfs.cpio.gz"
rm -rf "$run_stage"

# --- 5. Boot ------------------------------------------------------------------

serial=$work/serial.log
boot() {
	log "booting $(basename "$vmlinuz") under QEMU (timeout ${vm_timeout}s, serial log $serial)"
	set +e
	timeout -k 10 "$vm_timeout" qemu-system-x86_64 \
		-accel "${VM_ACCEL:-tcg,thread=multi}" -cpu max -M q35 -smp "${VM_SMP:-2}" -m "${VM_MEM:-1G}" \
		-nographic -no-reboot -nodefaults -serial stdio \
		-kernel "$vmlinuz" -initrd "$work/initramfs.cpio.gz" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init" \
		</dev/null | tee "$serial"
	status=("${PIPESTATUS[@]}")
	set -e
	step "guest finished"
	[ "${status[0]}" = 124 ] && log "error: QEMU timed out after ${vm_timeout}s"
	final=$(tr -d '\r' <"$serial" | grep -E '^vm: [0-9]+ passed, [0-9]+ failed$' | tail -n 1 || true)
}
boot
# The emulated kernel itself can crash under multi-threaded TCG (seen: an
# int3 Oops in the scheduler while a CPU quota's static key was patched,
# in a test that passes on every other boot): one more boot then, said
# aloud. A guest that hangs or reports failures is never booted again.
if [ -z "$final" ] && grep -qE 'Oops:|Kernel panic' "$serial"; then
	cp "$serial" "$serial.crashed"
	log "the guest kernel crashed (see $serial.crashed); booting once more"
	boot
fi
if [ -z "$final" ]; then
	log "error: the guest did not report (qemu exit status ${status[0]}); see $serial"
	exit 1
fi
echo "$final"
read -r n_passed n_failed < <(sed -E 's/^vm: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/' <<<"$final")
log "total $((SECONDS - t_start)) s"
if [ "$n_failed" -ne 0 ] || [ "$n_passed" -lt 1 ]; then
	exit 1
fi
