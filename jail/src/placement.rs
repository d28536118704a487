//! Where a new jail's init first runs.
//!
//! Right after clone3 the parent and the child both have set-up work to do,
//! and it can overlap on two CPUs: the parent writes the id maps, makes the
//! v1 cgroup and sends the run's part while the child builds its root. The
//! scheduler puts a new child on the CPU it finds idlest, and when spawns
//! come back to back that is often the parent's own, the other one being
//! busy with the kernel's teardown of the previous jail's namespaces. The
//! child then waits there until the parent blocks: 0.34 ms, in 6 spawns of
//! 10, measured on the 2-CPU development VM, and the whole run is that much
//! later.
//!
//! So the parent keeps the child off its own CPU before the child has run
//! anything (moving a task that never ran costs nothing but the move), and
//! the child, once released, widens its CPUs back to the parent's set: the
//! program inherits the caller's CPUs, as it would without this. Both steps
//! are best effort; with a single allowed CPU there is nothing to do.
//!
//! A thread started to work beside its creator ([`crate::beside`]) is
//! placed the same way, for the same reason.

use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs the caller may run on, to give back to the child.
#[derive(Clone, Copy)]
pub struct CpuPlacement {
    caller: CpuSet,
}

impl CpuPlacement {
    /// The calling thread's CPUs, when there are at least two.
    pub fn of_caller() -> Option<CpuPlacement> {
        let caller = sched_getaffinity(Pid::from_raw(0)).ok()?;
        (allowed(&caller).count() >= 2).then_some(CpuPlacement { caller })
    }

    /// Parent side, before the child is released: the child may run on
    /// every CPU of the caller's but the one the caller is on now.
    pub fn keep_child_off_ours(&self, child: Pid) {
        if let Some(elsewhere) = self.elsewhere() {
            let _ = sched_setaffinity(child, &elsewhere);
        }
    }

    /// The same for a thread just started, which would otherwise wait on
    /// our CPU for as long as we keep it busy.
    pub fn keep_thread_off_ours<T>(&self, thread: &std::thread::JoinHandle<T>) {
        let Some(elsewhere) = self.elsewhere() else { return };
        let _ = crate::sys::set_thread_affinity(thread, allowed(&elsewhere));
    }

    /// The caller's CPUs but the one it is on now, if that leaves any.
    fn elsewhere(&self) -> Option<CpuSet> {
        let ours = sched_getcpu().ok()?;
        let mut elsewhere = self.caller;
        elsewhere.unset(ours).ok()?;
        let any = allowed(&elsewhere).next().is_some();
        any.then_some(elsewhere)
    }

    /// Child side, once released (so after the parent's narrowing): back to
    /// the caller's CPUs.
    pub fn restore_in_child(&self) {
        let _ = sched_setaffinity(Pid::from_raw(0), &self.caller);
    }
}

/// The CPU numbers set in `set`.
fn allowed(set: &CpuSet) -> impl Iterator<Item = usize> + '_ {
    (0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false))
}
