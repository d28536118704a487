//! cgroup v2 backend: one directory per run under the root, limits in
//! memory.max / memory.swap.max / pids.max / cpu.max, freezing with
//! cgroup.freeze, killing with cgroup.kill, placement by clone3 or
//! cgroup.procs.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode as FileMode;
use nix::unistd::Pid;

use super::detect::Delegation;
use super::error::V2_DELEGATION_HINT;
use super::parse::CPU_PERIOD_US;
use super::{
    fs, kill, owner, CgroupError, CgroupLimits, Controller, Events, Peaks, Result, Usage, FREEZE_TIMEOUT, KILL_TIMEOUT,
};

/// Rounds of moving processes out of a delegated subtree's top; a process
/// forking meanwhile needs another round.
const MOVE_ROUNDS: u32 = 20;

#[derive(Debug)]
pub(crate) struct Root {
    runs: PathBuf,
}

impl Root {
    pub(crate) fn open(
        mount: &Path,
        runs: &Path,
        delegation: Option<&Delegation>,
        controllers: &[Controller],
    ) -> Result<Root> {
        match delegation {
            Some(d) => {
                // No internal processes: a cgroup that hands controllers to
                // children holds no process itself, so everything in the
                // subtree's top (this process first) moves to a leaf first.
                let leaf = d.subtree.join("supervisor");
                fs::ensure_dir(&leaf)?;
                move_all(&d.subtree, &leaf)?;
                enable(&d.subtree, controllers)?;
                fs::ensure_dir(runs)?;
                enable(runs, controllers)?;
            }
            None => {
                // A group gets a controller only if every ancestor enables it
                // for its children: enable it from the mount down to the root.
                let rel = runs.strip_prefix(mount).map_err(|_| CgroupError::BadRoot {
                    path: runs.to_owned(),
                    why: format!("not inside the cgroup2 mount {}", mount.display()),
                })?;
                let mut dir = mount.to_owned();
                enable(&dir, controllers)?;
                for part in rel.components() {
                    dir.push(part);
                    fs::ensure_dir(&dir)?;
                    enable(&dir, controllers)?;
                }
            }
        }
        Ok(Root { runs: runs.to_owned() })
    }

    pub(crate) fn runs(&self) -> &Path {
        &self.runs
    }

    pub(crate) fn create(&self, name: &str, limits: &CgroupLimits, quota: Option<u64>) -> Result<Group> {
        let path = self.runs.join(name);
        fs::create_dir(&path)?;
        let fd = match open_dir_fd(&path) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = fs::remove_tree(&path);
                return Err(e);
            }
        };
        let group = Group { name: name.to_owned(), path, fd, owner: owner(), peaks: Peaks::default(), removed: false };
        // On error the group is dropped, which removes it.
        group.apply(limits, quota)?;
        Ok(group)
    }
}

/// Writes `+c` to `dir`/cgroup.subtree_control for each controller not on yet
/// (writing only what is missing keeps EBUSY away from cgroups that hold
/// processes but already have what we need).
fn enable(dir: &Path, controllers: &[Controller]) -> Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let on = fs::read(&file)?;
    let on: Vec<&str> = on.split_whitespace().collect();
    let add: Vec<String> = controllers.iter().filter(|c| !on.contains(&c.name())).map(|c| format!("+{c}")).collect();
    if add.is_empty() {
        return Ok(());
    }
    fs::write(&file, &add.join(" "))
}

/// Moves every process in `from` (not below it) into `to`.
fn move_all(from: &Path, to: &Path) -> Result<()> {
    let target = to.join("cgroup.procs");
    for _ in 0..MOVE_ROUNDS {
        let pids = fs::pids(from)?;
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            match fs::write(&target, &pid.to_string()) {
                // Exited since the listing.
                Err(CgroupError::Write { err, .. }) if err.raw_os_error() == Some(libc::ESRCH) => {}
                other => other?,
            }
        }
    }
    Err(CgroupError::NotEmpty {
        path: from.to_owned(),
        pids: fs::pids(from)?.iter().map(|p| p.as_raw()).collect(),
        rounds: MOVE_ROUNDS,
        what: "moving processes into supervisor/",
    })
}

/// O_PATH is enough for CLONE_INTO_CGROUP (the kernel takes the fd with
/// fget_raw) and opens nothing readable.
fn open_dir_fd(path: &Path) -> Result<OwnedFd> {
    open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, FileMode::empty())
        .map_err(|errno| CgroupError::Open { path: path.to_owned(), err: errno.into() })
}

#[derive(Debug)]
pub(crate) struct Group {
    name: String,
    path: PathBuf,
    fd: OwnedFd,
    owner: Pid,
    peaks: Peaks,
    removed: bool,
}

impl Group {
    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn apply(&self, limits: &CgroupLimits, quota: Option<u64>) -> Result<()> {
        // What the parent enabled for us; a limit without its controller is
        // an error, not a silent no-op.
        let offered = fs::read(&self.file("cgroup.controllers"))?;
        let need = |c: Controller| {
            if offered.split_whitespace().any(|w| w == c.name()) {
                Ok(())
            } else {
                Err(CgroupError::ControllerMissing { controller: c, path: self.path.clone(), hint: V2_DELEGATION_HINT })
            }
        };
        if let Some(bytes) = limits.memory_max {
            need(Controller::Memory)?;
            fs::write(&self.file("memory.max"), &bytes.to_string())?;
            // The limit means RAM: no swapping past it. Without swap
            // accounting the file does not exist and there is nothing to do.
            let swap = self.file("memory.swap.max");
            if swap.exists() {
                fs::write(&swap, "0")?;
            }
        }
        if let Some(n) = limits.pids_max {
            need(Controller::Pids)?;
            fs::write(&self.file("pids.max"), &n.to_string())?;
        }
        if let Some(q) = quota {
            need(Controller::Cpu)?;
            fs::write(&self.file("cpu.max"), &format!("{q} {CPU_PERIOD_US}"))?;
        }
        Ok(())
    }

    /// See [`super::Cgroup::update_limits`]; memory.swap.max stays 0.
    pub(crate) fn update_limits(&self, memory_max: Option<u64>, pids_max: Option<u64>) -> Result<()> {
        let max = |v: Option<u64>| v.map_or_else(|| "max".to_owned(), |n| n.to_string());
        fs::write(&self.file("memory.max"), &max(memory_max))?;
        fs::write(&self.file("pids.max"), &max(pids_max))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn paths(&self) -> Vec<&Path> {
        vec![&self.path]
    }

    pub(crate) fn path_of(&self, _: Controller) -> Option<&Path> {
        Some(&self.path)
    }

    pub(crate) fn clone3_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn add_pid(&self, pid: Pid) -> Result<()> {
        fs::write(&self.file("cgroup.procs"), &pid.to_string())
    }

    pub(crate) fn limits(&self) -> Result<CgroupLimits> {
        // A file is missing when its controller is not enabled: no limit.
        let (memory, pids, cpu) = (self.file("memory.max"), self.file("pids.max"), self.file("cpu.max"));
        Ok(CgroupLimits {
            memory_max: if memory.exists() { fs::limit(&memory)? } else { None },
            pids_max: if pids.exists() { fs::limit(&pids)? } else { None },
            cpus: if cpu.exists() { fs::cpu_max(&cpu)? } else { None },
        })
    }

    pub(crate) fn usage(&self) -> Result<Usage> {
        let memory_current = fs::number_if_exists(&self.file("memory.current"))?;
        let pids_current = fs::number_if_exists(&self.file("pids.current"))?;
        Ok(Usage {
            // cpu.stat is core: present with or without the cpu controller.
            cpu_usec: fs::keyed(&self.file("cpu.stat"), "usage_usec")?,
            memory_current,
            memory_peak: Peaks::or_tracked(
                fs::number_if_exists(&self.file("memory.peak"))?,
                memory_current,
                &self.peaks.memory,
            ),
            pids_current,
            pids_peak: Peaks::or_tracked(
                fs::number_if_exists(&self.file("pids.peak"))?,
                pids_current,
                &self.peaks.pids,
            ),
        })
    }

    pub(crate) fn events(&self) -> Result<Events> {
        let [oom_kills, memory_max_hits] = fs::keyed_all(&self.file("memory.events"), ["oom_kill", "max"])?;
        Ok(Events { oom_kills, memory_max_hits, pids_max_hits: fs::keyed(&self.file("pids.events"), "max")? })
    }

    /// Writes cgroup.freeze and waits for cgroup.events to say it is done:
    /// the write only starts freezing.
    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let (value, want) = if frozen { ("1", "frozen 1") } else { ("0", "frozen 0") };
        fs::write(&self.file("cgroup.freeze"), value)?;
        let events = self.file("cgroup.events");
        let target = u64::from(frozen);
        fs::wait_until(&events, want, FREEZE_TIMEOUT, || Ok(fs::keyed(&events, "frozen")? == Some(target)))
    }

    pub(crate) fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    pub(crate) fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    pub(crate) fn kill(&self) -> Result<()> {
        let file = self.file("cgroup.kill");
        if !file.exists() {
            // Before Linux 5.14: do it by hand, as on v1.
            let freezer = |frozen| self.set_frozen(frozen);
            return kill::by_signal(&self.path, Some(&freezer), &|| self.pids());
        }
        fs::write(&file, "1")?;
        let events = self.file("cgroup.events");
        fs::wait_until(&events, "populated 0", KILL_TIMEOUT, || self.is_empty())
    }

    pub(crate) fn pids(&self) -> Result<Vec<Pid>> {
        fs::pids_recursive(&self.path)
    }

    /// cgroup.events `populated` counts the whole subtree.
    pub(crate) fn is_empty(&self) -> Result<bool> {
        match fs::keyed(&self.file("cgroup.events"), "populated")? {
            Some(populated) => Ok(populated == 0),
            None => Ok(self.pids()?.is_empty()),
        }
    }

    pub(crate) fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.remove_now()
    }

    fn remove_now(&self) -> Result<()> {
        if fs::removed_at_once(&self.path) {
            return Ok(());
        }
        if self.path.exists() && !self.is_empty()? {
            self.kill()?;
        }
        fs::remove_tree(&self.path)
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

    /// A fixture v2 group directory holding the files the kernel would.
    fn fixture(files: &[(&str, &str)]) -> (tempfile::TempDir, Group) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        stdfs::create_dir(&path).unwrap();
        for (name, text) in files {
            stdfs::write(path.join(name), text).unwrap();
        }
        let group = Group {
            name: "g".into(),
            fd: open_dir_fd(&path).unwrap(),
            path,
            owner: owner(),
            peaks: Peaks::default(),
            // Fixture directories hold regular files: never rmdir them.
            removed: true,
        };
        (dir, group)
    }

    #[test]
    fn usage_reads_cpu_stat_and_tracks_peaks_without_peak_files() {
        let (_dir, g) = fixture(&[
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"),
            ("memory.current", "4096\n"),
            ("pids.current", "3\n"),
            ("pids.peak", "7\n"),
        ]);
        let u = g.usage().unwrap();
        assert_eq!(u.cpu_usec, Some(1500));
        assert_eq!(u.memory_current, Some(4096));
        assert_eq!(u.memory_peak, Some(4096), "tracked, no memory.peak");
        assert_eq!(u.pids_peak, Some(7), "the kernel's pids.peak");
        stdfs::write(g.file("memory.current"), "1024\n").unwrap();
        assert_eq!(g.usage().unwrap().memory_peak, Some(4096));
    }

    #[test]
    fn usage_without_controllers_is_none_not_zero() {
        let (_dir, g) = fixture(&[("cpu.stat", "usage_usec 9\n")]);
        let u = g.usage().unwrap();
        assert_eq!(u, Usage { cpu_usec: Some(9), ..Default::default() });
    }

    #[test]
    fn events_read_memory_and_pids_events() {
        let (_dir, g) = fixture(&[
            ("memory.events", "low 0\nhigh 0\nmax 41\noom 2\noom_kill 1\noom_group_kill 0\n"),
            ("pids.events", "max 5\n"),
        ]);
        let e = g.events().unwrap();
        assert_eq!(e, Events { oom_kills: Some(1), memory_max_hits: Some(41), pids_max_hits: Some(5) });
    }

    #[test]
    fn apply_writes_limits_and_turns_swap_off() {
        let (_dir, g) = fixture(&[
            ("cgroup.controllers", "cpu memory pids\n"),
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("pids.max", "max\n"),
            ("cpu.max", "max 100000\n"),
        ]);
        let limits = CgroupLimits { memory_max: Some(64 << 20), pids_max: Some(16), cpus: Some(0.2) };
        g.apply(&limits, Some(20_000)).unwrap();
        let read = |f| stdfs::read_to_string(g.file(f)).unwrap();
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("pids.max"), "16");
        assert_eq!(read("cpu.max"), "20000 100000");
        assert_eq!(g.limits().unwrap(), limits);
    }

    #[test]
    fn apply_names_a_missing_controller() {
        let (_dir, g) = fixture(&[("cgroup.controllers", "memory\n")]);
        let limits = CgroupLimits { pids_max: Some(16), ..Default::default() };
        let err = g.apply(&limits, None).unwrap_err().to_string();
        assert!(err.starts_with("the pids controller is not available for "), "{err}");
        assert!(err.ends_with("or pass --cgroup-root"), "{err}");
    }

    #[test]
    fn enable_writes_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cgroup.subtree_control");
        stdfs::write(&file, "cpu io\n").unwrap();
        enable(dir.path(), &Controller::V2).unwrap();
        assert_eq!(stdfs::read_to_string(&file).unwrap(), "+memory +pids");
        stdfs::write(&file, "cpu memory pids\n").unwrap();
        enable(dir.path(), &Controller::V2).unwrap();
        // Nothing missing: not written (a write would have replaced the text).
        assert_eq!(stdfs::read_to_string(&file).unwrap(), "cpu memory pids\n");
    }
}
