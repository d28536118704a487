//! File operations on cgroupfs, each turning an io::Error into a
//! [`CgroupError`] that names the file (and the value written). Both backends
//! go through here, so no raw std::fs call escapes without a path in its error.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::parse;
use super::CgroupError;

type Result<T> = std::result::Result<T, CgroupError>;

pub(crate) fn read(path: &Path) -> Result<String> {
    crate::sys::read_kernel_file(path).map_err(|err| CgroupError::Read { path: path.to_owned(), err })
}

/// Like [`read`], but a missing file is `None`: used for files that only some
/// kernels have (memory.peak, pids.peak, memory.swap.max, cgroup.kill).
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<String>> {
    match crate::sys::read_kernel_file(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(CgroupError::Read { path: path.to_owned(), err }),
    }
}

/// Opens a control file for writing, without O_CREAT (see [`write`]).
pub(crate) fn open_for_write(path: &Path) -> Result<fs::File> {
    OpenOptions::new().write(true).open(path).map_err(|err| CgroupError::Write {
        path: path.to_owned(),
        value: String::new(),
        err,
    })
}

/// Writes `value` in a single write(2): cgroupfs takes each write as a whole
/// command, so a value must never be split. No O_CREAT: a missing file is an
/// error (it means a controller is absent), not a new regular file.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let wrap = |err| CgroupError::Write { path: path.to_owned(), value: value.to_owned(), err };
    let mut file = OpenOptions::new().write(true).truncate(true).open(path).map_err(wrap)?;
    file.write_all(value.as_bytes()).map_err(wrap)
}

/// Wraps a parser's complaint with the file it read.
fn parsed<T>(path: &Path, text: &str, r: std::result::Result<T, String>) -> Result<T> {
    r.map_err(|what| CgroupError::Parse { path: path.to_owned(), text: text.chars().take(200).collect(), what })
}

/// A single-number file; `None` when the file does not exist.
pub(crate) fn number_if_exists(path: &Path) -> Result<Option<u64>> {
    read_if_exists(path)?.map(|text| parsed(path, &text, parse::number(&text))).transpose()
}

/// A limit file ("max" or a number); see [`parse::limit`].
pub(crate) fn limit(path: &Path) -> Result<Option<u64>> {
    let text = read(path)?;
    parsed(path, &text, parse::limit(&text))
}

/// One key of a flat keyed file; `None` when the file or the key is missing.
pub(crate) fn keyed(path: &Path, key: &str) -> Result<Option<u64>> {
    let [value] = keyed_all(path, [key])?;
    Ok(value)
}

/// v2 cpu.max as a fraction of CPUs.
pub(crate) fn cpu_max(path: &Path) -> Result<Option<f64>> {
    let text = read(path)?;
    parsed(path, &text, parse::cpu_max(&text))
}

/// Several keys of one flat keyed file, read once so they agree; all `None`
/// when the file is missing.
pub(crate) fn keyed_all<const N: usize>(path: &Path, keys: [&str; N]) -> Result<[Option<u64>; N]> {
    let mut out = [None; N];
    if let Some(text) = read_if_exists(path)? {
        for (slot, key) in out.iter_mut().zip(keys) {
            *slot = parsed(path, &text, parse::keyed(&text, key))?;
        }
    }
    Ok(out)
}

/// The pids in `dir`/cgroup.procs (empty if the group is gone). Zombies are
/// not listed by the kernel, so an empty answer means nothing can run.
pub(crate) fn pids(dir: &Path) -> Result<Vec<Pid>> {
    let procs = dir.join("cgroup.procs");
    let Some(text) = read_if_exists(&procs)? else {
        return Ok(Vec::new());
    };
    Ok(parsed(&procs, &text, parse::pids(&text))?.into_iter().map(Pid::from_raw).collect())
}

/// [`pids`] of `dir` and of every cgroup below it.
pub(crate) fn pids_recursive(dir: &Path) -> Result<Vec<Pid>> {
    let mut pids = pids(dir)?;
    for child in subdirs(dir)? {
        pids.extend(pids_recursive(&dir.join(child))?);
    }
    Ok(pids)
}

/// Names of the directories (child cgroups) in `dir`; empty if `dir` is gone.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let wrap = |err| CgroupError::Read { path: dir.to_owned(), err };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(wrap(err)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(wrap)?;
        if entry.file_type().map_err(wrap)?.is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// mkdir that fails if the cgroup exists: a run's group must be new.
pub(crate) fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir(path).map_err(|err| CgroupError::CreateDir { path: path.to_owned(), err })
}

/// mkdir -p, for the shared parents (`ccos`, `runs`, `supervisor`), which
/// other processes may be creating at the same moment.
pub(crate) fn ensure_dir(path: &Path) -> Result<()> {
    // Nearly always there already: a stat is cheaper than cgroupfs turning
    // down a mkdir.
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path).map_err(|err| CgroupError::CreateDir { path: path.to_owned(), err })
}

/// How long rmdir is retried on EBUSY: a killed process leaves its cgroup a
/// moment after it stops being listed in cgroup.procs.
const RMDIR_RETRY_FOR: Duration = Duration::from_secs(2);

/// The common end of a group: empty and without children, so one rmdir
/// removes it. True when `dir` is gone; false when it is still there (busy:
/// processes or child groups left), which [`remove_tree`] then handles.
pub(crate) fn removed_at_once(dir: &Path) -> bool {
    match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(err) => err.kind() == io::ErrorKind::NotFound,
    }
}

/// Removes a cgroup and every cgroup below it, deepest first. A group that is
/// already gone is fine; EBUSY is retried for [`RMDIR_RETRY_FOR`].
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    for child in subdirs(dir)? {
        remove_tree(&dir.join(child))?;
    }
    let deadline = Instant::now() + RMDIR_RETRY_FOR;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(Duration::from_millis(10));
            }
            Err(err) => return Err(CgroupError::RemoveDir { path: dir.to_owned(), err }),
        }
    }
}

/// Polls `done` until it answers true, with a short backoff, for at most
/// `timeout`; the error names `path` and what was awaited.
pub(crate) fn wait_until(
    path: &Path,
    want: &'static str,
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(CgroupError::Timeout { path: path.to_owned(), want, waited: start.elapsed() });
        }
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `base` joined with a path given relative to a hierarchy's top ("/a/b").
pub(crate) fn under(base: &Path, cgroup_path: &str) -> PathBuf {
    match cgroup_path.trim_matches('/') {
        "" => base.to_owned(),
        rel => base.join(rel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_whole_past_the_first_buffer_and_missing_files_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.stat");
        // Past the 8 KiB the read starts with, and not a multiple of it.
        let text: String = (0..3000).map(|i| format!("{i}\n")).collect();
        assert!(text.len() > 3 * 8192 / 2);
        fs::write(&file, &text).unwrap();
        assert_eq!(read(&file).unwrap(), text);
        assert_eq!(read_if_exists(&dir.path().join("memory.peak")).unwrap(), None);
        // The kernel's own files, which report a size of 0.
        assert!(read(Path::new("/proc/self/mountinfo")).unwrap().contains(" / "));
    }

    #[test]
    fn write_replaces_content_and_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.max");
        fs::write(&file, "max\n").unwrap();
        write(&file, "67108864").unwrap();
        assert_eq!(limit(&file).unwrap(), Some(67_108_864));
        let err = write(&dir.path().join("pids.max"), "16").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("writing \"16\" to "), "{text}");
        assert!(text.contains("pids.max: No such file or directory"), "{text}");
        // Nothing was created by the failed write.
        assert!(!dir.path().join("pids.max").exists());
    }

    #[test]
    fn pids_recursive_walks_children_and_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.procs"), "10\n11\n").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/cgroup.procs"), "12\n").unwrap();
        let pids: Vec<i32> = pids_recursive(dir.path()).unwrap().iter().map(|p| p.as_raw()).collect();
        assert_eq!(pids, vec![10, 11, 12]);
        assert!(pids_recursive(&dir.path().join("gone")).unwrap().is_empty());
    }

    #[test]
    fn parse_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids.events");
        fs::write(&file, "max lots\n").unwrap();
        let text = keyed(&file, "max").unwrap_err().to_string();
        assert!(text.contains("pids.events: max is not a number"), "{text}");
    }

    #[test]
    fn wait_until_times_out_with_the_path() {
        let err = wait_until(Path::new("/x/cgroup.events"), "frozen 1", Duration::ZERO, || Ok(false)).unwrap_err();
        assert!(err.to_string().contains("/x/cgroup.events to show frozen 1"));
    }

    #[test]
    fn remove_tree_goes_deepest_first() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("g");
        fs::create_dir_all(g.join("a/b")).unwrap();
        remove_tree(&g).unwrap();
        assert!(!g.exists());
        remove_tree(&g).unwrap();
    }
}
