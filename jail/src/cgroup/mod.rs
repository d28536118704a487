//! Cgroups for jails: one interface, two backends (v2 in `v2.rs`, v1 in
//! `v1.rs`), picked at start by [`detect`].
//!
//! ```text
//! detect(&CgroupConfig) -> Detection      what the host has (read-only)
//! Cgroups::open(&Detection) -> Cgroups    prepares the root (mkdir, subtree_control,
//!                                         v2 delegation: move self into supervisor/)
//! Cgroups::create(name, &limits) -> Cgroup   one run's group
//! Cgroup: clone3_fd / add_pid, usage, events, freeze, thaw, kill, remove
//! ```
//!
//! Placement: on v2 the spawn code passes [`Cgroup::clone3_fd`] to
//! `clone3(CLONE_INTO_CGROUP)` so the child starts inside its group; on v1
//! the jail's init moves itself in, through the files of
//! [`Cgroup::self_join_files`] that the parent sends it. [`Cgroup::add_pid`]
//! moves another process by pid (slower: see `self_join_files`).
//!
//! Every path is a parameter (see [`CgroupConfig`]), so the unit tests run
//! on fixture trees in a tempdir; the real behaviour is tested as root in
//! `tests/cgroup.rs`.

mod detect;
mod doctor;
mod error;
mod fs;
mod kill;
mod parse;
mod stale;
mod v1;
mod v2;
mod xattr;

use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

pub use detect::{detect, CgroupConfig, Delegation, DelegationChoice, Detection, Hierarchy, Layout};
pub use doctor::HostCgroups;
pub use error::CgroupError;

pub type Result<T> = std::result::Result<T, CgroupError>;

pub use crate::sys::CLONE_INTO_CGROUP;

/// The directory made under each hierarchy (v1) or the cgroup2 mount (v2,
/// when not delegated) to hold the runs' groups.
pub const DEFAULT_ROOT: &str = "ccos";

/// Which cgroup interface is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    V1,
    V2,
}

impl Mode {
    /// 1 or 2, as `GET /v1/info` reports it.
    pub fn version(self) -> u8 {
        match self {
            Mode::V1 => 1,
            Mode::V2 => 2,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cgroup v{}", self.version())
    }
}

/// The controllers this backend uses. On v2, freezing and CPU time are part
/// of the core (cgroup.freeze, cpu.stat), so only the first three matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
    Cpuacct,
    Freezer,
}

impl Controller {
    /// What a v2 run group needs.
    pub const V2: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];
    /// What a v1 run group needs, one hierarchy each (cpu and cpuacct may
    /// share one).
    pub const V1: [Controller; 5] =
        [Controller::Memory, Controller::Pids, Controller::Cpu, Controller::Cpuacct, Controller::Freezer];

    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Freezer => "freezer",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Controller> {
        Controller::V1.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits for one run's group; `None` leaves the kernel default (no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CgroupLimits {
    /// Bytes of memory; swap is turned off for the group as well
    /// (memory.swap.max = 0 on v2, memory.memsw.limit_in_bytes on v1).
    pub memory_max: Option<u64>,
    /// Processes and threads in the group.
    pub pids_max: Option<u64>,
    /// Fraction of CPUs, e.g. 0.5 = half of one CPU (CFS quota per 100 ms).
    pub cpus: Option<f64>,
}

impl CgroupLimits {
    /// Refuses limits the kernel would take but that make no sense for a run
    /// (0 bytes, 0 pids), or would refuse with a bare EINVAL (a quota under
    /// 1 ms). Returns the CPU quota in microseconds per 100 ms period.
    fn check(&self) -> Result<Option<u64>> {
        let bad = |what, value: String, why| CgroupError::InvalidLimit { what, value, why };
        if self.memory_max == Some(0) {
            return Err(bad("memory_max", "0".into(), "must be at least one page"));
        }
        if self.pids_max == Some(0) {
            return Err(bad("pids_max", "0".into(), "must be at least 1"));
        }
        self.cpus
            .map(|cpus| {
                parse::cpu_quota(cpus).ok_or_else(|| bad("cpus", cpus.to_string(), "must be a number of CPUs >= 0.01"))
            })
            .transpose()
    }
}

/// What a group has used. A field is `None` when its controller is not
/// there (for example v2 without delegated controllers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// CPU time of all processes that ran in the group, microseconds (v2
    /// cpu.stat usage_usec; v1 cpuacct.usage, which is in nanoseconds).
    pub cpu_usec: Option<u64>,
    /// Bytes charged now (memory.current / memory.usage_in_bytes).
    pub memory_current: Option<u64>,
    /// Highest charge since the group was made (v2 memory.peak, Linux 5.19;
    /// v1 memory.max_usage_in_bytes). Without either, the highest value this
    /// handle saw, which is a lower bound.
    pub memory_peak: Option<u64>,
    pub pids_current: Option<u64>,
    /// pids.peak where the kernel has it (Linux 6.1, v1 and v2 alike); else
    /// the highest pids.current this handle saw, a lower bound.
    pub pids_peak: Option<u64>,
}

/// Counters of limit hits since the group was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Events {
    /// Processes the OOM killer killed in the group (v2 memory.events
    /// oom_kill; v1 memory.oom_control oom_kill, Linux 4.13). `None` when the
    /// kernel does not count them: then look at `memory_max_hits` and whether
    /// the program died of SIGKILL.
    pub oom_kills: Option<u64>,
    /// Times usage hit the memory limit (v2 memory.events max; v1
    /// memory.failcnt). Reclaim often satisfies these, so this is a hint of
    /// memory pressure, not of a kill.
    pub memory_max_hits: Option<u64>,
    /// Forks refused by pids.max (pids.events max, v1 and v2).
    pub pids_max_hits: Option<u64>,
}

/// The host's cgroup root for runs, ready to make groups in.
#[derive(Debug)]
pub struct Cgroups {
    backend: RootBackend,
}

#[derive(Debug)]
enum RootBackend {
    V1(v1::Root),
    V2(v2::Root),
}

impl Cgroups {
    /// Makes the root ready: on v2 enables `+memory +pids +cpu` down to it
    /// and, in a delegated subtree, first moves this process (and any other
    /// in that cgroup) into the leaf `supervisor/` because of the "no
    /// internal processes" rule; on v1 makes `<mount>/ccos` on each hierarchy.
    pub fn open(detection: &Detection) -> Result<Cgroups> {
        let backend = match &detection.layout {
            Layout::V1 { hierarchies, parent } => RootBackend::V1(v1::Root::open(hierarchies, parent)?),
            Layout::V2 { mount, runs, delegation, .. } => {
                RootBackend::V2(v2::Root::open(mount, runs, delegation.as_ref(), &detection.available)?)
            }
        };
        Ok(Cgroups { backend })
    }

    pub fn mode(&self) -> Mode {
        match self.backend {
            RootBackend::V1(_) => Mode::V1,
            RootBackend::V2(_) => Mode::V2,
        }
    }

    /// Where run groups are made: one directory on v2, one per hierarchy on v1.
    pub fn root_paths(&self) -> Vec<&Path> {
        match &self.backend {
            RootBackend::V1(r) => r.parents(),
            RootBackend::V2(r) => vec![r.runs()],
        }
    }

    /// Makes the group `name` (which must not exist) and sets `limits`. A
    /// limit whose controller is missing is an error naming the controller,
    /// never silently dropped.
    pub fn create(&self, name: &str, limits: &CgroupLimits) -> Result<Cgroup> {
        check_name(name)?;
        let quota = limits.check()?;
        let backend = match &self.backend {
            RootBackend::V1(r) => GroupBackend::V1(r.create(name, limits, quota)?),
            RootBackend::V2(r) => GroupBackend::V2(r.create(name, limits, quota)?),
        };
        Ok(Cgroup { backend })
    }

    /// What [`Cgroups::create`] would refuse before making anything: a bad
    /// name or limits.
    pub fn check_request(&self, name: &str, limits: &CgroupLimits) -> Result<()> {
        check_name(name)?;
        limits.check().map(drop)
    }

    /// Names of the groups under the root that start with `prefix`.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        stale::list(&self.root_paths(), prefix)
    }

    /// Groups starting with `prefix` that hold no process: what a crash
    /// leaves behind.
    pub fn list_stale(&self, prefix: &str) -> Result<Vec<String>> {
        stale::list_empty(&self.root_paths(), prefix)
    }

    /// Removes the groups of [`Cgroups::list_stale`] for which `is_stale`
    /// says yes (the CLI passes "the owner pid in `jail-<pid>` is dead").
    /// Tries every one; returns the names removed, or the first error.
    pub fn remove_stale(&self, prefix: &str, is_stale: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        stale::remove_empty(&self.root_paths(), prefix, is_stale)
    }
}

/// One run's cgroup. Dropping it kills what is left in it and removes it
/// (only in the process that made it, so a forked child never does).
#[derive(Debug)]
pub struct Cgroup {
    backend: GroupBackend,
}

#[derive(Debug)]
enum GroupBackend {
    V1(v1::Group),
    V2(v2::Group),
}

/// Calls the same method on whichever backend the group has.
macro_rules! dispatch {
    ($self:expr, $g:ident => $call:expr) => {
        match &$self.backend {
            GroupBackend::V1($g) => $call,
            GroupBackend::V2($g) => $call,
        }
    };
}

impl Cgroup {
    pub fn name(&self) -> &str {
        dispatch!(self, g => g.name())
    }

    pub fn mode(&self) -> Mode {
        match self.backend {
            GroupBackend::V1(_) => Mode::V1,
            GroupBackend::V2(_) => Mode::V2,
        }
    }

    /// The group's directories: one on v2, one per hierarchy on v1.
    pub fn paths(&self) -> Vec<&Path> {
        dispatch!(self, g => g.paths())
    }

    /// The directory holding `controller`'s files (v2: the group itself).
    pub fn path_of(&self, controller: Controller) -> Option<&Path> {
        dispatch!(self, g => g.path_of(controller))
    }

    /// v2 only: an O_PATH|O_DIRECTORY fd of the group, to pass as
    /// `clone_args.cgroup` with [`CLONE_INTO_CGROUP`].
    pub fn clone3_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backend {
            GroupBackend::V1(_) => None,
            GroupBackend::V2(g) => Some(g.clone3_fd()),
        }
    }

    /// v1 only: each hierarchy's `tasks` file, opened here for writing, for
    /// a jail's init to move itself in by writing "0" to each. A thread
    /// moving itself skips the global lock that moving another process by
    /// pid takes, which waits out an RCU grace period (about 10 ms). The
    /// kernel checks such a write against the credentials of whoever opened
    /// the file (Linux 5.16 and later), so an fd opened by the privileged
    /// parent works in a child that is no longer privileged on the host.
    pub fn self_join_files(&self) -> Result<Option<Vec<std::fs::File>>> {
        match &self.backend {
            GroupBackend::V1(g) => g.self_join_files().map(Some),
            GroupBackend::V2(_) => Ok(None),
        }
    }

    /// Moves the process `pid` (all its threads) into the group, on every
    /// hierarchy. Call it before the child runs anything of the program.
    pub fn add_pid(&self, pid: Pid) -> Result<()> {
        dispatch!(self, g => g.add_pid(pid))
    }

    /// The limits as the kernel holds them now.
    pub fn limits(&self) -> Result<CgroupLimits> {
        dispatch!(self, g => g.limits())
    }

    /// Changes the memory and pids limits of a live group; `None` lifts
    /// the limit. Swap stays off. Lowering memory below what the group
    /// uses makes the kernel reclaim, and fails (v1: EBUSY) or OOM-kills
    /// (v2) when it cannot.
    pub fn update_limits(&self, memory_max: Option<u64>, pids_max: Option<u64>) -> Result<()> {
        CgroupLimits { memory_max, pids_max, cpus: None }.check()?;
        dispatch!(self, g => g.update_limits(memory_max, pids_max))
    }

    pub fn usage(&self) -> Result<Usage> {
        dispatch!(self, g => g.usage())
    }

    pub fn events(&self) -> Result<Events> {
        dispatch!(self, g => g.events())
    }

    /// Stops every process in the group and returns once the kernel says
    /// they are all frozen (bounded wait).
    pub fn freeze(&self) -> Result<()> {
        dispatch!(self, g => g.freeze())
    }

    pub fn thaw(&self) -> Result<()> {
        dispatch!(self, g => g.thaw())
    }

    /// SIGKILLs every process in the group, including ones that double-forked
    /// and called setsid, and returns once the group is empty (bounded).
    pub fn kill(&self) -> Result<()> {
        dispatch!(self, g => g.kill())
    }

    /// The pids in the group and below it, in this process's pid namespace.
    pub fn pids(&self) -> Result<Vec<Pid>> {
        dispatch!(self, g => g.pids())
    }

    pub fn is_empty(&self) -> Result<bool> {
        dispatch!(self, g => g.is_empty())
    }

    /// Kills what is left, then removes the group on every hierarchy.
    pub fn remove(self) -> Result<()> {
        match self.backend {
            GroupBackend::V1(g) => g.remove(),
            GroupBackend::V2(g) => g.remove(),
        }
    }
}

/// A group name is one path component the kernel accepts: the names come
/// from run ids, so refuse anything that could walk out of the root.
fn check_name(name: &str) -> Result<()> {
    let bad = |why| Err(CgroupError::InvalidName { name: name.to_string(), why });
    if name.is_empty() || name == "." || name == ".." {
        return bad("must be a plain file name");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if name.contains(['/', '\0', '\n']) {
        return bad("must not contain '/', NUL or a newline");
    }
    // v2 reserves names that look like interface files (cgroup.procs, ...).
    if name.starts_with("cgroup.") {
        return bad("must not start with \"cgroup.\"");
    }
    Ok(())
}

/// Highest values seen, for kernels that keep no peak file. Atomic so a
/// group can be read from any thread through a shared reference.
#[derive(Debug, Default)]
struct Peaks {
    memory: AtomicU64,
    pids: AtomicU64,
}

impl Peaks {
    /// The kernel's peak when it has one, else the highest `current` seen.
    fn or_tracked(kernel: Option<u64>, current: Option<u64>, seen: &AtomicU64) -> Option<u64> {
        let current = current?;
        let highest = seen.fetch_max(current, Ordering::Relaxed).max(current);
        Some(kernel.unwrap_or(highest))
    }
}

/// How long a freeze or thaw may take before it is an error. Generous, as
/// under QEMU without KVM everything runs 5-12 times slower.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long v2 cgroup.kill may take to empty a group.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Who made a group: only that process removes it on Drop.
fn owner() -> Pid {
    nix::unistd::getpid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_refused() {
        for name in ["", ".", "..", "a/b", "../x", "a\nb", "cgroup.procs"] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        check_name("jail-1234").unwrap();
        let long = "x".repeat(256);
        assert!(check_name(&long).unwrap_err().to_string().contains("longer than 255 bytes"));
    }

    #[test]
    fn limits_are_checked_before_anything_is_made() {
        let quota = CgroupLimits { cpus: Some(0.25), ..Default::default() }.check().unwrap();
        assert_eq!(quota, Some(25_000));
        let err = CgroupLimits { cpus: Some(0.0), ..Default::default() }.check().unwrap_err();
        assert_eq!(err.to_string(), "invalid limit cpus = 0: must be a number of CPUs >= 0.01");
        assert!(CgroupLimits { pids_max: Some(0), ..Default::default() }.check().is_err());
    }

    #[test]
    fn tracked_peak_is_a_running_max_unless_the_kernel_knows() {
        let seen = AtomicU64::new(0);
        assert_eq!(Peaks::or_tracked(None, Some(5), &seen), Some(5));
        assert_eq!(Peaks::or_tracked(None, Some(3), &seen), Some(5));
        assert_eq!(Peaks::or_tracked(Some(9), Some(3), &seen), Some(9));
        assert_eq!(Peaks::or_tracked(None, None, &seen), None);
    }

    #[test]
    fn clone_into_cgroup_is_the_kernel_value() {
        assert_eq!(CLONE_INTO_CGROUP, 1 << 33);
    }
}
