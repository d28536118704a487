//! A jail the spawner holds, from its spawn until it is reaped.
//!
//! A jail first *starts*: its init has the run's part and sets it up (the
//! run's binds, its stdio, seccomp, execve) while the spawner goes on with
//! other requests and jails (not with making the next run's jail, which
//! waits until no jail starts: see the serve loop). The daemon's
//! `Spawned` answer waits until the program's execve (or the set-up's
//! failure), which the spawner learns by polling the jail's set-up pipe.
//! Then the jail *runs* until its pidfd says it ended.
//!
//! Waiting for the execve inside the request, as the spawner once did,
//! held its single thread for the whole of each jail's set-up: about a
//! third of its time in the throughput benchmark.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use ccos_jail::spawn::{Jail, Starting};
use ccos_jail::Report;

use super::protocol::{Reply, RequestId};

/// A jail the spawner holds.
pub(super) struct Live {
    stage: Stage,
    /// When its time limit runs out; `None` without one, or once killed.
    pub(super) deadline: Option<Instant>,
}

enum Stage {
    Starting { starting: Starting, answer: SpawnAnswer },
    Running(Jail),
}

/// What the daemon's `Spawned` needs, kept while the program starts.
pub(super) struct SpawnAnswer {
    pub(super) request: RequestId,
    pub(super) run_id: String,
    pub(super) profile_hash: String,
    /// The daemon's own copy of the jail's pidfd: the spawner's stays with
    /// the jail until it is reaped.
    pub(super) pidfd: OwnedFd,
}

/// The `Spawned` answer to queue once a jail's program started.
pub(super) struct Answer {
    pub(super) request: RequestId,
    pub(super) reply: Reply,
    pub(super) pidfd: OwnedFd,
}

impl Live {
    pub(super) fn starting(starting: Starting, answer: SpawnAnswer, deadline: Option<Instant>) -> Live {
        Live { stage: Stage::Starting { starting, answer }, deadline }
    }

    pub(super) fn jail(&self) -> &Jail {
        match &self.stage {
            Stage::Starting { starting, .. } => starting.jail(),
            Stage::Running(jail) => jail,
        }
    }

    pub(super) fn jail_mut(&mut self) -> &mut Jail {
        match &mut self.stage {
            Stage::Starting { starting, .. } => starting.jail_mut(),
            Stage::Running(jail) => jail,
        }
    }

    pub(super) fn is_starting(&self) -> bool {
        matches!(self.stage, Stage::Starting { .. })
    }

    /// While starting: the set-up pipe, readable (or hung up) once the
    /// program's execve happened or its set-up failed.
    pub(super) fn setup_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.stage {
            Stage::Starting { starting, .. } => Some(starting.setup_fd()),
            Stage::Running(_) => None,
        }
    }

    /// Ends the starting stage: the `Spawned` answer, or `None` if the jail
    /// runs already. Blocks until the execve or the set-up's failure, so
    /// call it once [`Live::setup_fd`] is ready, or once the jail ended
    /// (its processes are gone, so its pipe is at end of file).
    pub(super) fn finish_start(self) -> (Live, Option<Answer>) {
        let Live { stage, deadline } = self;
        match stage {
            Stage::Starting { starting, answer } => {
                let jail = starting.finish();
                let reply = Reply::Spawned {
                    run_id: answer.run_id,
                    pid: jail.pid.as_raw(),
                    profile_hash: answer.profile_hash,
                    setup_failure: jail.setup_failure().cloned(),
                };
                let answer = Answer { request: answer.request, reply, pidfd: answer.pidfd };
                (Live { stage: Stage::Running(jail), deadline }, Some(answer))
            }
            running => (Live { stage: running, deadline }, None),
        }
    }

    /// Reaps the jail (see [`Jail::collect`]): call it once its pidfd is
    /// readable. A jail still starting is finished first, without an answer
    /// (the caller has queued it already, or has no one to send it to).
    pub(super) fn collect(self) -> Result<Report, ccos_jail::Error> {
        match self.stage {
            Stage::Starting { starting, .. } => starting.finish().collect(),
            Stage::Running(jail) => jail.collect(),
        }
    }

    /// The jail's pidfd, to poll.
    pub(super) fn pidfd(&self) -> BorrowedFd<'_> {
        self.jail().pidfd.as_fd()
    }
}
