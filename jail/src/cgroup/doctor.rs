//! What `ccos-jail doctor` says about cgroups: the detection, plus a real
//! try at making (and removing) a group with every limit the host allows.

use std::fmt;

use super::{detect, CgroupConfig, CgroupError, CgroupLimits, Cgroups, Controller, Detection};

#[derive(Debug)]
pub struct HostCgroups {
    pub detection: Result<Detection, CgroupError>,
    /// `None` when detection failed, so nothing was tried.
    pub can_create: Option<Result<(), CgroupError>>,
}

impl HostCgroups {
    /// Detects, opens the root and makes a probe group `ccos-doctor-<pid>`.
    /// Opening is not read-only: in a delegated v2 subtree it moves the
    /// calling process into `supervisor/`, so call it from the service's main
    /// process, not from ExecStartPre.
    pub fn check(config: &CgroupConfig) -> HostCgroups {
        match detect(config) {
            Ok(d) => HostCgroups { can_create: Some(probe(&d)), detection: Ok(d) },
            Err(e) => HostCgroups { detection: Err(e), can_create: None },
        }
    }

    /// True when every needed controller is there and a group could be made:
    /// `doctor` fails closed on anything else.
    pub fn ok(&self) -> bool {
        matches!(&self.detection, Ok(d) if d.missing.is_empty()) && matches!(self.can_create, Some(Ok(())))
    }
}

fn probe(d: &Detection) -> Result<(), CgroupError> {
    let has = |c| d.available.contains(&c);
    let limits = CgroupLimits {
        memory_max: has(Controller::Memory).then_some(64 << 20),
        pids_max: has(Controller::Pids).then_some(64),
        cpus: has(Controller::Cpu).then_some(0.5),
    };
    let name = format!("ccos-doctor-{}", std::process::id());
    Cgroups::open(d)?.create(&name, &limits)?.remove()
}

impl fmt::Display for HostCgroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detection {
            Ok(d) => writeln!(f, "{d}")?,
            Err(e) => writeln!(f, "cgroups: unusable: {e}")?,
        }
        match &self.can_create {
            Some(Ok(())) => write!(f, "can create a group: yes"),
            Some(Err(e)) => write!(f, "can create a group: no: {e}"),
            None => write!(f, "can create a group: not tried"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_cgroups_is_reported_and_not_ok() {
        let dir = tempfile::tempdir().unwrap();
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(&mountinfo, "25 30 0:23 / /sys rw - sysfs sysfs rw\n").unwrap();
        let host = HostCgroups::check(&CgroupConfig { mountinfo, ..Default::default() });
        assert!(!host.ok());
        let text = host.to_string();
        assert!(text.starts_with("cgroups: unusable: no cgroup hierarchy is mounted"), "{text}");
        assert!(text.ends_with("can create a group: not tried"), "{text}");
    }
}
