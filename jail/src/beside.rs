//! Work on a second thread before a spawn.
//!
//! A caller with work to do before [`spawn`](crate::spawn) that does not
//! depend on the rest (`ccos-jail run` reads its profile and finds the
//! cgroups while it makes the jail's network namespace) can run part of it
//! here, on another CPU. Spawn forks and so must find the process with one
//! thread: [`Beside::finish`] returns once the thread is gone from the
//! process, not only joined.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::placement::CpuPlacement;

/// `work` running on a thread of its own.
pub struct Beside<T>(JoinHandle<(T, Pid)>);

/// Starts `work` on a new thread, kept off the caller's CPU so that both
/// run at once (a new thread is otherwise often queued behind its creator).
pub fn beside<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Beside<T> {
    let thread = std::thread::spawn(move || (work(), nix::unistd::gettid()));
    if let Some(cpus) = CpuPlacement::of_caller() {
        cpus.keep_thread_off_ours(&thread);
    }
    Beside(thread)
}

impl<T> Beside<T> {
    /// What `work` returned, once its thread has left the process. A
    /// joined thread still counts in /proc/self/task for the few
    /// microseconds the kernel takes to finish its exit after it woke the
    /// joiner; a second is far more than that ever takes, and past it spawn
    /// reports the extra thread itself.
    pub fn finish(self) -> T {
        let (value, tid) = self.0.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let task = format!("/proc/self/task/{tid}");
        let started = Instant::now();
        while std::fs::symlink_metadata(&task).is_ok() && started.elapsed() < Duration::from_secs(1) {
            std::thread::yield_now();
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_is_gone_from_the_process_when_finish_returns() {
        // The joiner wakes when the thread's memory is released, early in
        // its exit; closing files comes later. A thread with many files of
        // its own to close is still listed for a while after the join.
        let exit_slowly = || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FILES).expect("unshare(CLONE_FILES)");
            let null = std::fs::File::open("/dev/null").expect("/dev/null");
            let copies: Vec<_> = (0..500).map(|_| null.try_clone().expect("dup")).collect();
            std::mem::forget(copies);
            nix::unistd::gettid()
        };
        for _ in 0..20 {
            let tid = beside(exit_slowly).finish();
            let task = format!("/proc/self/task/{tid}");
            assert!(std::fs::symlink_metadata(&task).is_err(), "{task} is still there after finish");
        }
    }

    #[test]
    fn finish_returns_what_the_work_returned() {
        let text = String::from("made beside");
        assert_eq!(beside(move || text.len()).finish(), 11);
    }
}
