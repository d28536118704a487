//! Groups left behind by a crash: the same on v1 and v2, given the
//! directories runs' groups are made in (one per hierarchy on v1).

use std::path::Path;

use super::{fs, Result};

/// Names of groups starting with `prefix` on any of `parents`.
pub(crate) fn list(parents: &[&Path], prefix: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for parent in parents {
        names.extend(fs::subdirs(parent)?.into_iter().filter(|n| n.starts_with(prefix)));
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Those of [`list`] that hold no process on any hierarchy.
pub(crate) fn list_empty(parents: &[&Path], prefix: &str) -> Result<Vec<String>> {
    let mut empty = Vec::new();
    for name in list(parents, prefix)? {
        if is_empty(parents, &name)? {
            empty.push(name);
        }
    }
    Ok(empty)
}

fn is_empty(parents: &[&Path], name: &str) -> Result<bool> {
    for parent in parents {
        if !fs::pids_recursive(&parent.join(name))?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes the empty groups `is_stale` accepts; tries them all and returns
/// the names removed, or the first error. `is_stale` is asked first: it is
/// cheap, and it turns down the live groups (the caller's own, usually the
/// only one) before their processes are listed on every hierarchy.
pub(crate) fn remove_empty(parents: &[&Path], prefix: &str, is_stale: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut first_err = None;
    for name in list(parents, prefix)? {
        if !is_stale(&name) || !is_empty(parents, &name)? {
            continue;
        }
        let result = parents.iter().try_for_each(|p| fs::remove_tree(&p.join(&name)));
        match result {
            Ok(()) => removed.push(name),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(removed), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs as stdfs;

    /// Two fake hierarchies; "jail-1" is empty on both, "jail-2" has a pid on
    /// the second one only, "other" does not match the prefix.
    #[test]
    fn only_empty_groups_with_the_prefix_that_the_predicate_accepts_go() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("memory/ccos"), dir.path().join("pids/ccos"));
        for (parent, name, procs) in [
            (&a, "jail-1", ""),
            (&b, "jail-1", ""),
            (&a, "jail-2", ""),
            (&b, "jail-2", "42\n"),
            (&a, "jail-3", ""),
            (&a, "other", ""),
        ] {
            stdfs::create_dir_all(parent.join(name)).unwrap();
            stdfs::write(parent.join(name).join("cgroup.procs"), procs).unwrap();
        }
        let parents = [a.as_path(), b.as_path()];
        assert_eq!(list(&parents, "jail-").unwrap(), ["jail-1", "jail-2", "jail-3"]);
        assert_eq!(list_empty(&parents, "jail-").unwrap(), ["jail-1", "jail-3"]);

        // Fixture groups hold a regular file, which rmdir refuses: remove the
        // file first for the one the predicate picks, as the kernel would.
        stdfs::remove_file(a.join("jail-1/cgroup.procs")).unwrap();
        stdfs::remove_file(b.join("jail-1/cgroup.procs")).unwrap();
        let removed = remove_empty(&parents, "jail-", |n| n == "jail-1").unwrap();
        assert_eq!(removed, ["jail-1"]);
        assert!(!a.join("jail-1").exists() && !b.join("jail-1").exists());
        assert!(a.join("jail-3").exists(), "the predicate said keep");
        assert!(b.join("jail-2").exists(), "it holds a process");
    }
}
