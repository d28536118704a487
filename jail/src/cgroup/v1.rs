//! cgroup v1 backend: one directory per run on each hierarchy (memory, pids,
//! cpu and cpuacct, together or apart, freezer). Placement writes the pid on
//! every hierarchy; there is no cgroup.kill, so kill is freeze, SIGKILL, thaw.

use std::path::{Path, PathBuf};

use nix::unistd::Pid;

use super::detect::Hierarchy;
use super::error::V1_MOUNT_HINT;
use super::parse::{cpus_of, CPU_PERIOD_US};
use super::{fs, kill, owner, CgroupError, CgroupLimits, Controller, Events, Peaks, Result, Usage, FREEZE_TIMEOUT};

/// A directory on one hierarchy and the controllers it serves.
#[derive(Debug)]
struct Dir {
    controllers: Vec<Controller>,
    path: PathBuf,
}

#[derive(Debug)]
pub(crate) struct Root {
    /// `<mount>/<parent>` for each hierarchy.
    parents: Vec<Dir>,
}

impl Root {
    pub(crate) fn open(hierarchies: &[Hierarchy], parent: &Path) -> Result<Root> {
        let mut parents = Vec::new();
        for h in hierarchies {
            let path = h.mount.join(parent);
            fs::ensure_dir(&path)?;
            parents.push(Dir { controllers: h.controllers.clone(), path });
        }
        Ok(Root { parents })
    }

    pub(crate) fn parents(&self) -> Vec<&Path> {
        self.parents.iter().map(|d| d.path.as_path()).collect()
    }

    pub(crate) fn create(&self, name: &str, limits: &CgroupLimits, quota: Option<u64>) -> Result<Group> {
        let mut group =
            Group { name: name.to_owned(), dirs: Vec::new(), owner: owner(), peaks: Peaks::default(), removed: false };
        for parent in &self.parents {
            let path = parent.path.join(name);
            // On error the group is dropped, which removes only the
            // directories made so far (never one that existed before).
            fs::create_dir(&path)?;
            group.dirs.push(Dir { controllers: parent.controllers.clone(), path });
        }
        group.apply(limits, quota)?;
        Ok(group)
    }
}

#[derive(Debug)]
pub(crate) struct Group {
    name: String,
    dirs: Vec<Dir>,
    owner: Pid,
    peaks: Peaks,
    removed: bool,
}

impl Group {
    pub(crate) fn path_of(&self, c: Controller) -> Option<&Path> {
        self.dirs.iter().find(|d| d.controllers.contains(&c)).map(|d| d.path.as_path())
    }

    /// `file` in the directory of `c`, or `None` without that hierarchy.
    fn file(&self, c: Controller, file: &str) -> Option<PathBuf> {
        self.path_of(c).map(|d| d.join(file))
    }

    fn need(&self, c: Controller) -> Result<&Path> {
        self.path_of(c).ok_or_else(|| CgroupError::ControllerMissing {
            controller: c,
            path: self.dirs.first().map_or_else(|| PathBuf::from(&self.name), |d| d.path.clone()),
            hint: V1_MOUNT_HINT,
        })
    }

    fn apply(&self, limits: &CgroupLimits, quota: Option<u64>) -> Result<()> {
        if let Some(bytes) = limits.memory_max {
            let dir = self.need(Controller::Memory)?;
            let bytes = bytes.to_string();
            fs::write(&dir.join("memory.limit_in_bytes"), &bytes)?;
            // memsw is memory+swap: the same value means no swap. Absent when
            // the kernel does not account swap. Must come after the memory
            // limit, as the kernel keeps memsw >= memory.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                fs::write(&memsw, &bytes)?;
            }
        }
        if let Some(n) = limits.pids_max {
            let dir = self.need(Controller::Pids)?;
            fs::write(&dir.join("pids.max"), &n.to_string())?;
        }
        if let Some(q) = quota {
            let dir = self.need(Controller::Cpu)?;
            fs::write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            fs::write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
        }
        Ok(())
    }

    /// See [`super::Cgroup::update_limits`]. The kernel keeps memsw >=
    /// memory at every write, so a raise writes memsw first and a cut
    /// writes memory first.
    pub(crate) fn update_limits(&self, memory_max: Option<u64>, pids_max: Option<u64>) -> Result<()> {
        let dir = self.need(Controller::Memory)?;
        let (memory, memsw) = (dir.join("memory.limit_in_bytes"), dir.join("memory.memsw.limit_in_bytes"));
        let value = memory_max.map_or_else(|| "-1".to_owned(), |b| b.to_string());
        let current = fs::limit(&memory)?;
        let raising = match (memory_max, current) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(new), Some(old)) => new >= old,
        };
        let files: Vec<&Path> = if !memsw.exists() {
            vec![&memory]
        } else if raising {
            vec![&memsw, &memory]
        } else {
            vec![&memory, &memsw]
        };
        for file in files {
            fs::write(file, &value)?;
        }
        let dir = self.need(Controller::Pids)?;
        fs::write(&dir.join("pids.max"), &pids_max.map_or_else(|| "max".to_owned(), |n| n.to_string()))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn paths(&self) -> Vec<&Path> {
        self.dirs.iter().map(|d| d.path.as_path()).collect()
    }

    /// Every hierarchy's `tasks` file, open for writing (see
    /// [`super::Cgroup::self_join_files`]).
    pub(crate) fn self_join_files(&self) -> Result<Vec<std::fs::File>> {
        self.dirs.iter().map(|d| fs::open_for_write(&d.path.join("tasks"))).collect()
    }

    /// Writes the pid on every hierarchy. If one write fails the process is
    /// placed on some only: the caller must then kill it, not release it.
    pub(crate) fn add_pid(&self, pid: Pid) -> Result<()> {
        let pid = pid.to_string();
        self.dirs.iter().try_for_each(|d| fs::write(&d.path.join("cgroup.procs"), &pid))
    }

    pub(crate) fn limits(&self) -> Result<CgroupLimits> {
        let limit = |c, name| self.file(c, name).map(|f| fs::limit(&f)).transpose();
        let quota = limit(Controller::Cpu, "cpu.cfs_quota_us")?.flatten();
        let cpus = match (quota, self.file(Controller::Cpu, "cpu.cfs_period_us")) {
            (Some(q), Some(period)) => fs::number_if_exists(&period)?.map(|p| cpus_of(q, p)),
            _ => None,
        };
        Ok(CgroupLimits {
            memory_max: limit(Controller::Memory, "memory.limit_in_bytes")?.flatten(),
            pids_max: limit(Controller::Pids, "pids.max")?.flatten(),
            cpus,
        })
    }

    /// A single-number file of controller `c`; `None` without the hierarchy
    /// or the file.
    fn number(&self, c: Controller, name: &str) -> Result<Option<u64>> {
        match self.file(c, name) {
            Some(f) => fs::number_if_exists(&f),
            None => Ok(None),
        }
    }

    pub(crate) fn usage(&self) -> Result<Usage> {
        let memory_current = self.number(Controller::Memory, "memory.usage_in_bytes")?;
        let pids_current = self.number(Controller::Pids, "pids.current")?;
        Ok(Usage {
            // cpuacct.usage is in nanoseconds.
            cpu_usec: self.number(Controller::Cpuacct, "cpuacct.usage")?.map(|ns| ns / 1000),
            memory_current,
            memory_peak: Peaks::or_tracked(
                self.number(Controller::Memory, "memory.max_usage_in_bytes")?,
                memory_current,
                &self.peaks.memory,
            ),
            pids_current,
            // pids.peak came with Linux 6.1, on v1 too; before, track it.
            pids_peak: Peaks::or_tracked(self.number(Controller::Pids, "pids.peak")?, pids_current, &self.peaks.pids),
        })
    }

    pub(crate) fn events(&self) -> Result<Events> {
        let keyed = |c, file, key| match self.file(c, file) {
            Some(f) => fs::keyed(&f, key),
            None => Ok(None),
        };
        Ok(Events {
            // oom_kill in memory.oom_control came with Linux 4.13.
            oom_kills: keyed(Controller::Memory, "memory.oom_control", "oom_kill")?,
            memory_max_hits: self.number(Controller::Memory, "memory.failcnt")?,
            pids_max_hits: keyed(Controller::Pids, "pids.events", "max")?,
        })
    }

    /// Writes freezer.state and waits until it reads back the state: it
    /// shows FREEZING until every task has stopped.
    ///
    /// A v1 freeze can stay FREEZING when it races tasks that fork or exec
    /// (a task created while the freeze was being applied may be missed),
    /// so, as runc does, the wait writes FROZEN again on every poll and now
    /// and then thaws briefly to let such tasks settle before freezing anew.
    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let state = self.need(Controller::Freezer)?.join("freezer.state");
        let want = if frozen { "FROZEN" } else { "THAWED" };
        fs::write(&state, want)?;
        let mut polls = 0u32;
        fs::wait_until(&state, want, FREEZE_TIMEOUT, || {
            if fs::read(&state)?.trim() == want {
                return Ok(true);
            }
            if frozen {
                polls += 1;
                if polls % 50 == 0 {
                    fs::write(&state, "THAWED")?;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                fs::write(&state, want)?;
            }
            Ok(false)
        })
    }

    pub(crate) fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    pub(crate) fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    pub(crate) fn kill(&self) -> Result<()> {
        let freezer = |frozen| self.set_frozen(frozen);
        let freezer: Option<&dyn Fn(bool) -> Result<()>> = self.path_of(Controller::Freezer).map(|_| &freezer as _);
        let name = self.dirs.first().map_or(Path::new(&self.name), |d| &d.path);
        kill::by_signal(name, freezer, &|| self.pids())
    }

    /// The union over hierarchies: a process placed on some only (a failed
    /// add_pid) still counts.
    pub(crate) fn pids(&self) -> Result<Vec<Pid>> {
        let mut pids = Vec::new();
        for d in &self.dirs {
            pids.extend(fs::pids_recursive(&d.path)?);
        }
        pids.sort();
        pids.dedup();
        Ok(pids)
    }

    pub(crate) fn is_empty(&self) -> Result<bool> {
        Ok(self.pids()?.is_empty())
    }

    pub(crate) fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.remove_now()
    }

    /// Removes every hierarchy's directory, killing what is left first if
    /// one does not go at once (all are tried; the first error is returned).
    fn remove_now(&self) -> Result<()> {
        let left: Vec<&Dir> = self.dirs.iter().filter(|d| !fs::removed_at_once(&d.path)).collect();
        if left.is_empty() {
            return Ok(());
        }
        if !self.is_empty()? {
            self.kill()?;
        }
        let mut first_err = None;
        for d in left {
            if let Err(e) = fs::remove_tree(&d.path) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Group {
    /// The safety net: a group whose owner forgot it (or returned early on an
    /// error) does not outlive it. A forked child never runs this.
    fn drop(&mut self) {
        if !self.removed && owner() == self.owner {
            let _ = self.remove_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs as stdfs;

    /// A fixture group with separate cpu and cpuacct hierarchies, like this
    /// test machine's.
    fn fixture(files: &[(Controller, &str, &str)]) -> (tempfile::TempDir, Group) {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Controller::V1
            .iter()
            .map(|c| {
                let path = dir.path().join(c.name()).join("ccos/g");
                stdfs::create_dir_all(&path).unwrap();
                Dir { controllers: vec![*c], path }
            })
            .collect();
        let group = Group {
            name: "g".into(),
            dirs,
            owner: owner(),
            peaks: Peaks::default(),
            // Fixture directories hold regular files: never rmdir them.
            removed: true,
        };
        for (c, name, text) in files {
            stdfs::write(group.file(*c, name).unwrap(), text).unwrap();
        }
        (dir, group)
    }

    #[test]
    fn usage_converts_cpuacct_nanoseconds_and_uses_kernel_peaks() {
        use Controller::*;
        let (_dir, g) = fixture(&[
            (Cpuacct, "cpuacct.usage", "2500000\n"),
            (Memory, "memory.usage_in_bytes", "1048576\n"),
            (Memory, "memory.max_usage_in_bytes", "4194304\n"),
            (Pids, "pids.current", "2\n"),
        ]);
        let u = g.usage().unwrap();
        assert_eq!(u.cpu_usec, Some(2500));
        assert_eq!(u.memory_current, Some(1 << 20));
        assert_eq!(u.memory_peak, Some(4 << 20));
        assert_eq!(u.pids_peak, Some(2), "no pids.peak: tracked");
    }

    #[test]
    fn events_from_oom_control_failcnt_and_pids_events() {
        use Controller::*;
        let (_dir, g) = fixture(&[
            (Memory, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"),
            (Memory, "memory.failcnt", "321\n"),
            (Pids, "pids.events", "max 4\n"),
        ]);
        assert_eq!(
            g.events().unwrap(),
            Events { oom_kills: Some(1), memory_max_hits: Some(321), pids_max_hits: Some(4) }
        );
        // A kernel before 4.13: no oom_kill line, so no count (not zero).
        stdfs::write(g.file(Memory, "memory.oom_control").unwrap(), "oom_kill_disable 0\nunder_oom 0\n").unwrap();
        assert_eq!(g.events().unwrap().oom_kills, None);
    }

    #[test]
    fn apply_writes_v1_files_and_memsw_when_present() {
        use Controller::*;
        let (_dir, g) = fixture(&[
            (Memory, "memory.limit_in_bytes", "9223372036854771712\n"),
            (Memory, "memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            (Pids, "pids.max", "max\n"),
            (Cpu, "cpu.cfs_quota_us", "-1\n"),
            (Cpu, "cpu.cfs_period_us", "100000\n"),
        ]);
        let limits = CgroupLimits { memory_max: Some(32 << 20), pids_max: Some(16), cpus: Some(0.2) };
        g.apply(&limits, Some(20_000)).unwrap();
        let read = |c, f| stdfs::read_to_string(g.file(c, f).unwrap()).unwrap();
        assert_eq!(read(Memory, "memory.limit_in_bytes"), "33554432");
        assert_eq!(read(Memory, "memory.memsw.limit_in_bytes"), "33554432");
        assert_eq!(read(Cpu, "cpu.cfs_quota_us"), "20000");
        assert_eq!(g.limits().unwrap(), limits);
    }

    #[test]
    fn apply_without_memsw_and_without_a_hierarchy() {
        use Controller::*;
        let (_dir, mut g) = fixture(&[(Memory, "memory.limit_in_bytes", "0\n")]);
        let memory = CgroupLimits { memory_max: Some(4096), ..Default::default() };
        g.apply(&memory, None).unwrap();
        assert!(!g.file(Memory, "memory.memsw.limit_in_bytes").unwrap().exists());
        g.dirs.retain(|d| !d.controllers.contains(&Pids));
        let pids = CgroupLimits { pids_max: Some(4), ..Default::default() };
        let err = g.apply(&pids, None).unwrap_err().to_string();
        assert!(err.starts_with("the pids controller is not available for "), "{err}");
        assert!(err.contains("hierarchy is not mounted"), "{err}");
    }
}
