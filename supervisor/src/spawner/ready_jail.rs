//! A jail made ahead for the next run.
//!
//! Most of a jail's making does not depend on its run: the namespaces, the
//! id maps, the cgroup, the profile's part of the root and the network
//! (see [`ccos_jail::spawn::prepare`]). The spawner makes one such jail
//! while it has nothing else to do, for the profile, network mode and
//! limits of the last run; a run that matches starts in it, with only its
//! own part (binds, host name, program, stdio) left to do. One that does
//! not match gets a jail made from scratch, and the ready one is dropped
//! (killed, its cgroup removed).
//!
//! Nothing of a run has been in the ready jail before it starts there: its
//! init has run only the jail library's code, and waits on its sync socket
//! with the host's tree still in its mount namespace (detached at start,
//! as in every jail).

use std::sync::Arc;

use ccos_jail::cgroup::{CgroupLimits, Cgroups};
use ccos_jail::profile::NetworkMode;
use ccos_jail::spawn::{Ahead, CgroupSource, HostPaths, Prepared, Starting};
use ccos_jail::{JailSpec, Profile};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The jail made ahead, and the cgroup limits it was made with.
pub(super) struct ReadyJail {
    prepared: Prepared,
    limits: CgroupLimits,
}

impl ReadyJail {
    /// Makes a jail for runs of `profile` and `network`, in a cgroup named
    /// `group` with `limits`.
    pub(super) fn make(
        profile: &Arc<Profile>,
        network: NetworkMode,
        cgroups: &Cgroups,
        group: &str,
        limits: CgroupLimits,
    ) -> Result<ReadyJail, ccos_jail::Error> {
        let ahead = Ahead { profile, network, network_ready: None };
        let cgroup = CgroupSource::Make { cgroups, name: group, limits };
        let prepared = ccos_jail::spawn::prepare(&ahead, &HostPaths::default(), cgroup)?;
        Ok(ReadyJail { prepared, limits })
    }

    /// Whether a run of `profile` and `network` with `limits` can start
    /// here: the same profile (by hash) and network mode, the same CPU
    /// share (a live group's memory and pids limits can be changed, its
    /// CPU quota is not changed here), and the jail still alive.
    pub(super) fn fits(&self, profile: &Profile, network: NetworkMode, limits: &CgroupLimits) -> bool {
        self.prepared.serves(profile, network) && self.limits.cpus == limits.cpus && self.is_alive()
    }

    /// A prepared jail whose set-up failed, or that something killed, has
    /// exited: its pidfd is readable.
    fn is_alive(&self) -> bool {
        let mut fds = [PollFd::new(self.prepared.pidfd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
    }

    /// Starts `spec` here, with the run's memory and pids limits set on the
    /// jail's cgroup first; returns without waiting for its execve.
    pub(super) fn begin(self, spec: &JailSpec, limits: &CgroupLimits) -> Result<Starting, ccos_jail::Error> {
        let changed = (limits.memory_max, limits.pids_max) != (self.limits.memory_max, self.limits.pids_max);
        if let (true, Some(group)) = (changed, self.prepared.cgroup()) {
            group.update_limits(limits.memory_max, limits.pids_max)?;
        }
        self.prepared.begin(spec)
    }
}
