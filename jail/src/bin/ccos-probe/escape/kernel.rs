//! Kernel attack surface: tracing, BPF, perf, keys, module and kexec
//! loading, file handles, userfaultfd, io_uring and terminal injection.
//!
//! Safe unconfined: the tracing targets are children forked here that do
//! nothing but sleep; every object created (map, counter, key, fd) belongs to
//! the check process and goes with it; module and kexec loading are asked
//! with invalid flags, which the kernel rejects right after its permission
//! check and before it reads anything else.

use crate::outcome::{errno_of, Outcome};
use crate::sys;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::prctl;
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::uio::{self, RemoteIoVec};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, setsid, ForkResult, Pid};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// A child that only sleeps, for ptrace and process_vm_readv to aim at.
struct Target(Pid);

impl Target {
    fn spawn() -> Result<Target, Errno> {
        // SAFETY: the check process is single-threaded; the child only sets
        // its parent-death signal, sleeps and _exits.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let _ = prctl::set_pdeathsig(Signal::SIGKILL);
                std::thread::sleep(Duration::from_secs(30));
                sys::exit_now(0)
            }
            ForkResult::Parent { child } => Ok(Target(child)),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
        let _ = waitpid(self.0, None);
    }
}

pub fn ptrace() -> Outcome {
    let target = match Target::spawn() {
        Ok(t) => t,
        Err(e) => return Outcome::refused(e, format!("fork of a target failed: {}", e.desc())),
    };
    // SEIZE does not stop the tracee; the target is killed when `target`
    // drops, which also ends the trace.
    Outcome::attempt(
        ptrace::seize(target.0, ptrace::Options::empty()),
        &format!("PTRACE_SEIZE of our own child {}", target.0),
    )
}

/// A value the forked target has at the same address as we do.
static MARKER: u64 = 0x6363_6f73_5052_4f42;

pub fn process_vm_readv() -> Outcome {
    let target = match Target::spawn() {
        Ok(t) => t,
        Err(e) => return Outcome::refused(e, format!("fork of a target failed: {}", e.desc())),
    };
    let addr = std::hint::black_box(&MARKER as *const u64 as usize);
    let mut buf = [0u8; 8];
    let remote = [RemoteIoVec { base: addr, len: 8 }];
    let result = uio::process_vm_readv(target.0, &mut [IoSliceMut::new(&mut buf)], &remote);
    match result {
        Ok(n) => Outcome::escaped(format!(
            "process_vm_readv read {n} bytes of child {} (marker matches: {})",
            target.0,
            u64::from_ne_bytes(buf) == MARKER
        )),
        Err(e) => Outcome::refused(e, format!("process_vm_readv of our own child failed: {}", e.desc())),
    }
}

pub fn bpf() -> Outcome {
    Outcome::attempt(sys::bpf_array_map(), "bpf(BPF_MAP_CREATE, 1-entry array)")
}

pub fn perf_event_open() -> Outcome {
    // User-space-only counting on ourselves: the one perf use that
    // perf_event_paranoid <= 2 still allows without CAP_PERFMON, so only a
    // seccomp filter (or paranoid >= 3) can refuse it.
    Outcome::attempt(sys::perf_cpu_clock_self(), "perf_event_open(software cpu-clock, self, user-only)")
}

pub fn keyctl() -> Outcome {
    // The process keyring is private to the check process and destroyed
    // when it exits, along with the key.
    match sys::add_user_key_to_process_keyring(c"ccos-probe", b"x") {
        Ok(serial) => {
            Outcome::escaped(format!("add_key(\"user\") into the process keyring succeeded (serial {serial})"))
        }
        Err(e) => Outcome::refused(e, format!("add_key(\"user\") failed: {}", e.desc())),
    }
}

pub fn init_module() -> Outcome {
    // finit_module checks CAP_SYS_MODULE (and modules_disabled) first, then
    // rejects unknown flags with EINVAL before it reads the file. Bit 30 is
    // no MODULE_INIT_* flag, and the file is /dev/null anyway.
    let devnull = open("/dev/null", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty());
    let fd = devnull.as_ref().map_or(-1, |f| f.as_raw_fd());
    Outcome::past_check(sys::finit_module(fd, 1 << 30), &[Errno::EINVAL], "finit_module(/dev/null, invalid flags)")
}

pub fn kexec_load() -> Outcome {
    // kexec_load checks CAP_SYS_BOOT, kexec_load_disabled, LSMs and lockdown
    // first, then rejects flags outside KEXEC_FLAGS|KEXEC_ARCH_MASK with
    // EINVAL. 0x8000 is neither. (Valid flags with no segments would unload
    // the staged kernel; invalid flags can never get there.)
    Outcome::past_check(sys::kexec_load_no_segments(0x8000), &[Errno::EINVAL], "kexec_load(0 segments, invalid flags)")
}

pub fn open_by_handle_at() -> Outcome {
    // The kernel checks CAP_DAC_READ_SEARCH (or, for O_DIRECTORY, privilege
    // over the mount) before it reads the handle. Handle type 0xfe is none
    // that filesystems decode, so an allowed call fails with ESTALE (or
    // EINVAL); were it ever decoded, it would only open a directory
    // read-only. Any error but a permission error means the check passed.
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    Outcome::refused_only_by(
        sys::open_by_bogus_handle(0xfe, flags),
        &[Errno::EPERM, Errno::EACCES, Errno::ENOSYS],
        "open_by_handle_at(bogus handle)",
    )
}

pub fn userfaultfd() -> Outcome {
    // UFFD_USER_MODE_ONLY is what an unprivileged caller may ask for even
    // with vm.unprivileged_userfaultfd=0; kernels before 5.11 do not know
    // the flag (EINVAL), so then try without it.
    const UFFD_USER_MODE_ONLY: libc::c_int = 1;
    let flags = libc::O_CLOEXEC | UFFD_USER_MODE_ONLY;
    match sys::userfaultfd(flags) {
        Err(Errno::EINVAL) => Outcome::attempt(sys::userfaultfd(libc::O_CLOEXEC), "userfaultfd(O_CLOEXEC)"),
        other => Outcome::attempt(other, "userfaultfd(UFFD_USER_MODE_ONLY)"),
    }
}

pub fn io_uring_setup() -> Outcome {
    Outcome::attempt(sys::io_uring_setup(1), "io_uring_setup(1 entry)")
}

pub fn tiocsti() -> Outcome {
    // Inject into a pty of our own: the byte lands in that pty's input
    // queue and nowhere else. Making it our controlling terminal (setsid,
    // then open without O_NOCTTY) means only seccomp or
    // dev.tty.legacy_tiocsti=0 can refuse.
    let master = match posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY) {
        Ok(m) => m,
        Err(e) => return Outcome::refused(e, format!("open /dev/ptmx failed: {}", e.desc())),
    };
    let slave_name = match grantpt(&master).and_then(|()| unlockpt(&master)).and_then(|()| ptsname_r(&master)) {
        Ok(n) => n,
        Err(e) => return Outcome::refused(e, format!("unlocking the pty failed: {}", e.desc())),
    };
    // Closing the master of our controlling tty hangs it up and sends
    // SIGHUP, which must not kill the check before it reports.
    let _ = sys::ignore_signal(Signal::SIGHUP);
    let _ = setsid();
    let slave = match open(slave_name.as_str(), OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::refused(e, format!("open {slave_name} failed: {}", e.desc()));
        }
    };
    Outcome::attempt(sys::tiocsti(slave.as_fd(), Some(&b'#')), &format!("TIOCSTI into our own pty {slave_name}"))
}

pub fn tiocsti_stdin() -> Outcome {
    // On fd 0 a real injection would type into whatever terminal the probe
    // was started from, so pass a NULL byte pointer: the kernel reads it only
    // after both permission checks (legacy_tiocsti, controlling tty or
    // CAP_SYS_ADMIN), so EFAULT means "would have injected".
    let stdin_is = std::fs::read_link("/proc/self/fd/0")
        .map_or_else(|e| format!("?({})", errno_of(&e)), |p| p.display().to_string());
    let stdin = std::io::stdin();
    let mut outcome = Outcome::past_check(sys::tiocsti(stdin.as_fd(), None), &[Errno::EFAULT], "TIOCSTI on fd 0");
    outcome.detail = format!("{} (fd 0 is {stdin_is})", outcome.detail);
    outcome
}
