#!/usr/bin/python3
"""Builds, once and before any timing, what the bwrap and crun contenders of
bench/spawn.sh need, from ccos-jail's shipped default profile
(policies/default.toml) so that the three jails match where they can:

  seccomp.bpf          a compiled seccomp program (libseccomp's export_bpf)
                       for `bwrap --seccomp 3 3<seccomp.bpf`
  profile.env          hostname, uid, gid, /tmp size of the default profile,
                       as shell assignments (bwrap's flags use them)
  crun/config.json     an OCI bundle config equivalent to the bwrap command,
                       plus the default profile's cgroup limits and rlimits
                       (crun can apply them; bwrap cannot)
  crun/rootfs/         the bundle's root: empty mount points and the
                       /bin /sbin /lib /lib64 entries as they are on the host

Both filters deny the same syscalls with EPERM and allow everything else.

Run with Debian's /usr/bin/python3: the `seccomp` module comes from the Debian
package python3-seccomp and is not visible to other interpreters (pyenv...).

usage: fixtures.py WORKDIR PROFILE_TOML ETC_PATH...
"""

import errno
import json
import os
import shlex
import shutil
import sys
import tomllib

import seccomp

# Same denylist for bwrap and crun. The jailed program is /bin/true, which
# calls none of these: the point is to pay for loading and running a filter.
DENY = [
    "mount", "umount2", "pivot_root", "chroot",
    "ptrace", "process_vm_readv", "process_vm_writev",
    "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff",
    "bpf", "perf_event_open", "open_by_handle_at",
    "keyctl", "add_key", "request_key",
]

# The host's top-level entries that the jails recreate: a symlink on a
# merged-/usr host (Debian 12), a directory to bind read-only otherwise.
TOP = ["bin", "sbin", "lib", "lib64"]

# crun maps the jail's ids 0..65535 to a range of its own, the way ccos-jail
# does (ccos-jail's slots are 0x50000000 + n * 65536, n < 4096; this is the
# first range above them). bwrap and unshare, run by root, can only map the
# caller's own id.
CRUN_ID_BASE = 0x6000_0000
CRUN_ID_SIZE = 65536

RLIMITS = {"core": "RLIMIT_CORE", "nofile": "RLIMIT_NOFILE", "fsize": "RLIMIT_FSIZE",
           "nproc": "RLIMIT_NPROC", "memlock": "RLIMIT_MEMLOCK", "as": "RLIMIT_AS",
           "stack": "RLIMIT_STACK", "cpu": "RLIMIT_CPU", "nice": "RLIMIT_NICE"}


def parse_bytes(v):
    """jail/src/size.rs's parse_bytes: binary suffixes k, M, G, T."""
    if isinstance(v, int):
        return v
    t = v.strip()
    for suf in ("iB", "ib", "B", "b"):
        if t.endswith(suf):
            t = t[: -len(suf)]
            break
    shift = {"k": 10, "m": 20, "g": 30, "t": 40}.get(t[-1:].lower(), 0)
    return int(t[:-1] if shift else t) << shift


def load_profile(path):
    p = {}
    if os.path.exists(path):
        with open(path, "rb") as fh:
            p = tomllib.load(fh)
    limits = p.get("limits", {})
    return {
        "hostname": p.get("hostname", "ccos"),
        "uid": int(p.get("uid", 0)),
        "gid": int(p.get("gid", 0)),
        "tmp_size": parse_bytes(p.get("tmp", {}).get("size", "64M")),
        "rlimits": {k: parse_bytes(v) for k, v in p.get("rlimits", {}).items()},
        "memory": parse_bytes(limits["memory"]) if "memory" in limits else None,
        "pids": limits.get("pids"),
        "cpus": limits.get("cpus"),
    }


def write_bpf(path):
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENY:
        f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    with open(path, "wb") as fh:
        f.export_bpf(fh)


def ro_bind(src, dst=None):
    return {
        "destination": dst or src,
        "type": "bind",
        "source": src,
        "options": ["rbind", "ro", "nosuid", "nodev"],
    }


def write_bundle(bundle, prof, etc_paths):
    rootfs = os.path.join(bundle, "rootfs")
    if os.path.isdir(rootfs):
        shutil.rmtree(rootfs)
    for d in ["usr", "proc", "dev", "tmp", "etc"]:
        os.makedirs(os.path.join(rootfs, d))

    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        # bwrap's --dev also gives a private devpts and /dev/shm.
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", f"size={prof['tmp_size']}"]},
        ro_bind("/usr"),
    ]
    for top in TOP:
        host = "/" + top
        if not os.path.lexists(host):
            continue
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(rootfs, top))
        else:
            os.makedirs(os.path.join(rootfs, top))
            mounts.append(ro_bind(host))
    for etc in etc_paths:
        target = os.path.join(rootfs, etc.lstrip("/"))
        if os.path.isdir(etc):
            os.makedirs(target, exist_ok=True)
        else:
            open(target, "w").close()
        mounts.append(ro_bind(etc))

    resources = {}
    if prof["memory"] is not None:
        resources["memory"] = {"limit": prof["memory"]}
    if prof["pids"] is not None:
        resources["pids"] = {"limit": prof["pids"]}
    if prof["cpus"] is not None:
        resources["cpu"] = {"period": 100000, "quota": int(prof["cpus"] * 100000)}

    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": prof["uid"], "gid": prof["gid"]},
            "args": ["/bin/true"],
            "env": ["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/tmp"],
            "cwd": "/",
            # No capabilities at all, like the other contenders.
            "capabilities": {"bounding": [], "effective": [], "inheritable": [],
                             "permitted": [], "ambient": []},
            "rlimits": [{"type": RLIMITS[k], "hard": v, "soft": v}
                        for k, v in prof["rlimits"].items() if k in RLIMITS],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": prof["hostname"],
        "mounts": mounts,
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": CRUN_ID_BASE, "size": CRUN_ID_SIZE}],
            "gidMappings": [{"containerID": 0, "hostID": CRUN_ID_BASE, "size": CRUN_ID_SIZE}],
            "namespaces": [{"type": t} for t in
                           ["user", "pid", "mount", "network", "uts", "ipc", "cgroup"]],
            "resources": resources,
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                # No "architectures": native only, as libseccomp's default
                # for the bwrap program (other arches hit the bad-arch kill).
                "syscalls": [{"names": DENY, "action": "SCMP_ACT_ERRNO",
                              "errnoRet": errno.EPERM}],
            },
        },
    }
    with open(os.path.join(bundle, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
        fh.write("\n")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    work, profile_path, etc_paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    prof = load_profile(profile_path)
    os.makedirs(os.path.join(work, "crun"), exist_ok=True)
    write_bpf(os.path.join(work, "seccomp.bpf"))
    write_bundle(os.path.join(work, "crun"), prof, etc_paths)
    with open(os.path.join(work, "profile.env"), "w") as fh:
        for k in ("hostname", "uid", "gid", "tmp_size"):
            fh.write(f"PROFILE_{k.upper()}={shlex.quote(str(prof[k]))}\n")


if __name__ == "__main__":
    main()
