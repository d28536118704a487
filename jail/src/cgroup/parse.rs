//! Pure parsers for the text the kernel gives: flat keyed files (cpu.stat,
//! memory.events, pids.events, memory.oom_control), limits, pid lists,
//! /proc/self/cgroup and /proc/self/mountinfo. No I/O here, so the unit tests
//! feed them fixture text; errors are short strings the caller wraps with the
//! path.

use std::path::PathBuf;

/// The value of `key` in a flat keyed file ("key value" per line), or `None`
/// when the kernel does not have that key.
pub(crate) fn keyed(text: &str, key: &str) -> Result<Option<u64>, String> {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some(key) {
            continue;
        }
        let value = words.next().ok_or_else(|| format!("{key} has no value"))?;
        return value.parse().map(Some).map_err(|_| format!("{key} is not a number: {value:?}"));
    }
    Ok(None)
}

/// A single number, as in memory.current or pids.current.
pub(crate) fn number(text: &str) -> Result<u64, String> {
    let t = text.trim();
    t.parse().map_err(|_| format!("not a number: {t:?}"))
}

/// A limit file: `max` (v2, and v1 pids.max) means none; v1 memory files show
/// "no limit" as a page-rounded i64::MAX, and cfs_quota_us as -1.
pub(crate) fn limit(text: &str) -> Result<Option<u64>, String> {
    // The largest page-aligned value v1 reports for an unlimited memory cgroup
    // (PAGE_COUNTER_MAX * PAGE_SIZE): anything at or above it means no limit.
    const V1_UNLIMITED: u64 = 0x7fff_ffff_ffff_f000;
    match text.trim() {
        "max" | "-1" => Ok(None),
        t => {
            let v = number(t)?;
            Ok((v < V1_UNLIMITED).then_some(v))
        }
    }
}

/// v2 cpu.max: "max 100000" or "<quota> <period>", as a fraction of CPUs.
pub(crate) fn cpu_max(text: &str) -> Result<Option<f64>, String> {
    let mut words = text.split_whitespace();
    let (Some(quota), Some(period)) = (words.next(), words.next()) else {
        return Err(format!("want \"<quota> <period>\", got {:?}", text.trim()));
    };
    let Some(quota) = limit(quota)? else {
        return Ok(None);
    };
    let period = number(period)?;
    Ok(Some(cpus_of(quota, period)))
}

/// Fraction of CPUs for a CFS quota and period, both in microseconds.
pub(crate) fn cpus_of(quota_us: u64, period_us: u64) -> f64 {
    // Precision loss is irrelevant at these magnitudes (quotas are < 2^53 us).
    #[allow(clippy::cast_precision_loss)]
    let (q, p) = (quota_us as f64, period_us as f64);
    q / p
}

/// The CFS period we always use (100 ms, the kernel's default).
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

/// The kernel refuses quotas under 1 ms.
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// Quota in microseconds per [`CPU_PERIOD_US`] for a fraction of CPUs, or
/// `None` when the fraction is not usable.
pub(crate) fn cpu_quota(cpus: f64) -> Option<u64> {
    if !cpus.is_finite() || cpus <= 0.0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let quota = (cpus * CPU_PERIOD_US as f64).round();
    // A value over u64::MAX saturates, which the kernel then rejects by name.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let quota = quota as u64;
    (quota >= CPU_MIN_QUOTA_US).then_some(quota)
}

/// cgroup.procs: one pid per line.
pub(crate) fn pids(text: &str) -> Result<Vec<i32>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().map_err(|_| format!("not a pid: {l:?}")))
        .collect()
}

/// One line of /proc/<pid>/cgroup: `hierarchy-id:controllers:path`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    pub(crate) hierarchy: u32,
    /// Empty for the v2 line (`0::/path`); `name=systemd` style names are kept.
    pub(crate) controllers: Vec<String>,
    pub(crate) path: String,
}

pub(crate) fn proc_cgroup(text: &str) -> Result<Vec<ProcCgroup>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            // The path may itself hold ':' so split at most twice.
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("want id:controllers:path, got {line:?}"));
            };
            Ok(ProcCgroup {
                hierarchy: id.parse().map_err(|_| format!("bad hierarchy id in {line:?}"))?,
                controllers: ctrl.split(',').filter(|c| !c.is_empty()).map(String::from).collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// The cgroup path of the v2 line (`0::/path`) in /proc/<pid>/cgroup.
pub(crate) fn v2_path(lines: &[ProcCgroup]) -> Option<&str> {
    lines.iter().find(|l| l.hierarchy == 0 && l.controllers.is_empty()).map(|l| l.path.as_str())
}

/// A cgroup filesystem from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    pub(crate) mount_point: PathBuf,
    /// The cgroup this mount shows at its top (field 4), "/" unless bound from
    /// inside a hierarchy.
    pub(crate) root: String,
    /// `None` for cgroup2; for v1 the super options naming controllers
    /// (`memory`, `cpu`, `cpuacct`, `name=systemd`, ...).
    pub(crate) v1_options: Option<Vec<String>>,
}

/// Every cgroup and cgroup2 mount in mountinfo text, in order.
pub(crate) fn mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines().filter_map(mountinfo_line).collect()
}

fn mountinfo_line(line: &str) -> Option<CgroupMount> {
    // "36 35 98:0 /root /mnt opts [optional fields...] - fstype source superopts"
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    let (root, mount_point) = (left.get(3)?, left.get(4)?);
    let fstype = *right.first()?;
    let v1_options = match fstype {
        "cgroup2" => None,
        "cgroup" => Some(right.get(2).unwrap_or(&"").split(',').map(String::from).collect()),
        _ => return None,
    };
    Some(CgroupMount { mount_point: PathBuf::from(unescape(mount_point)), root: unescape(root), v1_options })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_STAT: &str = "usage_usec 4217\nuser_usec 3000\nsystem_usec 1217\n\
        nr_periods 20\nnr_throttled 18\nthrottled_usec 1600000\nnr_bursts 0\nburst_usec 0\n";

    #[test]
    fn cpu_stat_usage() {
        assert_eq!(keyed(CPU_STAT, "usage_usec"), Ok(Some(4217)));
        assert_eq!(keyed(CPU_STAT, "nr_throttled"), Ok(Some(18)));
        // "usage" must not match "usage_usec" by prefix.
        assert_eq!(keyed(CPU_STAT, "usage"), Ok(None));
    }

    #[test]
    fn memory_events_oom_kill() {
        let text = "low 0\nhigh 0\nmax 112\noom 3\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(text, "oom_kill"), Ok(Some(1)));
        assert_eq!(keyed(text, "max"), Ok(Some(112)));
        // Older kernels have no oom_group_kill; a missing key is None, not 0.
        assert_eq!(keyed("low 0\nmax 1\noom 1\n", "oom_kill"), Ok(None));
    }

    #[test]
    fn v1_oom_control() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(keyed(text, "oom_kill"), Ok(Some(2)));
        assert_eq!(keyed("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"), Ok(None));
    }

    #[test]
    fn pids_events() {
        assert_eq!(keyed("max 7\n", "max"), Ok(Some(7)));
        assert!(keyed("max lots\n", "max").unwrap_err().contains("lots"));
    }

    #[test]
    fn limits_read_back() {
        assert_eq!(limit("max\n"), Ok(None));
        assert_eq!(limit("-1\n"), Ok(None));
        assert_eq!(limit("67108864\n"), Ok(Some(67_108_864)));
        assert_eq!(limit("9223372036854771712\n"), Ok(None));
        assert_eq!(cpu_max("max 100000\n"), Ok(None));
        assert_eq!(cpu_max("20000 100000\n"), Ok(Some(0.2)));
        assert!(cpu_max("20000").is_err());
    }

    #[test]
    fn cpu_quota_rounds_and_refuses_nonsense() {
        assert_eq!(cpu_quota(0.2), Some(20_000));
        assert_eq!(cpu_quota(1.5), Some(150_000));
        assert_eq!(cpu_quota(0.01), Some(1_000));
        assert_eq!(cpu_quota(0.001), None);
        assert_eq!(cpu_quota(0.0), None);
        assert_eq!(cpu_quota(-1.0), None);
        assert_eq!(cpu_quota(f64::NAN), None);
        assert_eq!(cpu_quota(f64::INFINITY), None);
    }

    #[test]
    fn pid_lists() {
        assert_eq!(pids(""), Ok(vec![]));
        assert_eq!(pids("12\n345\n"), Ok(vec![12, 345]));
        assert!(pids("12\nx\n").is_err());
    }

    #[test]
    fn proc_self_cgroup_hybrid() {
        let text = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/99c6\n\
            2:cpuacct:/\n1:cpu:/\n0::/\n";
        let lines = proc_cgroup(text).unwrap();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[2].controllers, vec!["memory"]);
        assert_eq!(lines[2].path, "/process_api/99c6");
        assert_eq!(lines[0].controllers, vec!["name=systemd"]);
        assert_eq!(v2_path(&lines), Some("/"));
    }

    #[test]
    fn proc_self_cgroup_unified_with_colon_in_path() {
        let lines = proc_cgroup("0::/system.slice/ccos.service/a:b\n").unwrap();
        assert_eq!(v2_path(&lines), Some("/system.slice/ccos.service/a:b"));
        let combined = proc_cgroup("3:cpu,cpuacct:/x\n").unwrap();
        assert_eq!(combined[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(v2_path(&combined), None);
        assert!(proc_cgroup("garbage\n").is_err());
    }

    #[test]
    fn mountinfo_finds_cgroup_mounts_only() {
        let text = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 31 0:38 /x /mnt/with\\040space rw - cgroup2 cgroup2 rw
";
        let m = mountinfo(text);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m[0].v1_options.as_deref(), Some(&["rw".to_string(), "cpu".into(), "cpuacct".into()][..]));
        assert_eq!(m[3].v1_options, None);
        assert_eq!(m[4].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[4].root, "/x");
    }

    #[test]
    fn unescape_leaves_plain_backslashes() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\9b"), "a\\9b");
        assert_eq!(unescape("end\\"), "end\\");
    }
}
