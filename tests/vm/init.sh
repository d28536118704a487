#!/bin/sh
# /init of the test VM (busybox ash). Packed into the initramfs by
# tests/vm/run.sh; see tests/vm/README.md.
#
# Stage 1 (no argument): we are PID 1 on the initramfs (rootfs). pivot_root(2)
# refuses to move rootfs, so a jail could not build its root from here: copy
# everything onto a tmpfs and switch_root into it.
# Stage 2 ("stage2"): mount the kernel file systems, set up cgroup v2, run every
# test executable listed in /vm/tests, print "vm: N passed, M failed" and power
# off.

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

if [ "$1" != stage2 ]; then
	dev_mounted=false
	if [ ! -c /dev/console ]; then
		mount -t devtmpfs devtmpfs /dev && dev_mounted=true
		exec </dev/console >/dev/console 2>&1
	fi
	mkdir -p /newroot
	mount -t tmpfs -o mode=0755 rootfs2 /newroot
	for entry in /* /.[!.]*; do
		case "$entry" in
		/newroot | /proc | /sys | /dev | '/.[!.]*') ;;
		*) cp -a "$entry" /newroot/ ;;
		esac
	done
	mkdir -p /newroot/dev /newroot/proc /newroot/sys
	if $dev_mounted; then
		mount --move /dev /newroot/dev
	fi
	# switch_root must run as PID 1. If it fails, PID 1 exits, the kernel
	# panics (panic=-1, -no-reboot: QEMU quits) and run.sh says the guest
	# did not report.
	exec switch_root /newroot /init stage2
fi

# (busybox here has no mountpoint applet.)
echo # (the serial line may still hold SeaBIOS's terminal escapes)
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
[ -c /dev/null ] || mount -t devtmpfs -o nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=000 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm
# The root is already a tmpfs: /tmp needs no mount of its own, and one would
# hide the test binaries when the repository itself lives under /tmp (they
# sit at their host paths, which the tests have compiled in).
mkdir -p /tmp && chmod 1777 /tmp
mount -t tmpfs -o nosuid,nodev,mode=0755 run /run
# The options systemd uses, so the guest looks like production.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup 2>/dev/null ||
	mount -t cgroup2 cgroup2 /sys/fs/cgroup ||
	echo "vm: cannot mount cgroup2"
echo "+memory +pids +cpu" >/sys/fs/cgroup/cgroup.subtree_control ||
	echo "vm: cannot enable controllers"
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
# An eth0 with a default route, as on a real host, so "is there a route out?"
# has the host's answer. It is a dummy device: nothing leaves the VM.
if insmod "/usr/lib/modules/$(uname -r)/dummy.ko" 2>/dev/null &&
	ip link add eth0 type dummy && ip addr add 10.0.2.15/24 dev eth0 &&
	ip link set eth0 up && ip route add default via 10.0.2.2 dev eth0; then
	net="lo, eth0 (dummy) with a default route"
else
	net="lo only"
fi
hostname ccos-vm
chgrp shadow /etc/shadow 2>/dev/null

# Read the run's settings: the environment for the tests and their arguments.
# shellcheck disable=SC1091
[ -f /vm/env ] && . /vm/env
set --
if [ -f /vm/args ]; then
	while IFS= read -r arg; do set -- "$@" "$arg"; done </vm/args
fi
test_timeout=${VM_TEST_TIMEOUT:-300}

# Optionally run the tests in a cgroup below the root, the way a systemd
# service runs: controllers enabled on the way down, none in the leaf.
if [ -n "${VM_CGROUP:-}" ]; then
	cg=/sys/fs/cgroup
	for part in $(echo "$VM_CGROUP" | tr / ' '); do
		[ "$cg" = /sys/fs/cgroup ] || echo "+memory +pids +cpu" >"$cg/cgroup.subtree_control"
		cg=$cg/$part
		mkdir -p "$cg"
	done
	echo $$ >"$cg/cgroup.procs" || echo "vm: cannot move into $cg"
fi

echo "vm: kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print int($2/1024) " MiB"}' /proc/meminfo)"
echo "vm: cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
echo "vm: cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null)"
echo "vm: network: $net"
echo "vm: tests run in cgroup $(cut -d: -f3 /proc/self/cgroup)"

passed=0
failed=0
# Each line: name <tab> executable <tab> working directory (its package).
tab=$(printf '\t')
while IFS="$tab" read -r name exe dir; do
	[ -n "$name" ] || continue
	log=/run/vm-test-$name.log
	echo "vm: running $name ($exe --test-threads=1${*:+ $*})"
	start=$(cut -d' ' -f1 /proc/uptime)
	(
		cd "$dir" 2>/dev/null || cd /
		timeout -s KILL "$test_timeout" "$exe" --test-threads=1 "$@" </dev/null 2>&1
		echo "vm-exit: $?"
	) | tee "$log"
	end=$(cut -d' ' -f1 /proc/uptime)
	rc=$(sed -n 's/^vm-exit: \([0-9]*\)$/\1/p' "$log" | tail -n 1)
	results=$(sed -n 's/^test result: [A-Za-z]*\. \([0-9][0-9]*\) passed; \([0-9][0-9]*\) failed.*/\1 \2/p' "$log")
	p=0
	f=0
	if [ -n "$results" ]; then
		while read -r rp rf; do
			p=$((p + rp))
			f=$((f + rf))
		done <<EOF
$results
EOF
		# Exited badly although libtest reported no failure (crash after the
		# summary, killed by the time limit, ...): one failure.
		if [ "$f" -eq 0 ] && [ "${rc:-1}" != 0 ]; then
			echo "vm: $name exited with status ${rc:-?} after reporting no failure"
			f=1
		fi
	else
		echo "vm: $name printed no test result (exit status ${rc:-?}, 137 = killed after ${test_timeout}s or by SIGKILL)"
		f=1
	fi
	echo "vm: $name: $p passed, $f failed ($(awk "BEGIN {printf \"%.1f\", $end - $start}") s)"
	passed=$((passed + p))
	failed=$((failed + f))
done </vm/tests

if [ "$failed" -ne 0 ]; then
	echo "vm: last kernel messages (without the OOM reports' counter lines):"
	dmesg | grep -v -E '^\[ *[0-9.]+\] +[a-z_]+ [0-9]+$' | tail -n 25
fi
if [ ! -s /vm/tests ]; then
	echo "vm: no test executables"
	failed=$((failed + 1))
fi
sync
echo "vm: $passed passed, $failed failed"
poweroff -f
