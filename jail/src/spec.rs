//! What to run in a jail: the program, its environment, the profile and the
//! per-run additions (binds, tmpfs, limits). Pure data; nothing here touches
//! the system except reading the caller's environment for pass-through.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::net::PreparedNetwork;
use crate::profile::{BindMount, Limits, NetworkMode, Profile, TmpfsMount};

/// One jail to make.
#[derive(Debug)]
pub struct JailSpec {
    /// argv\[0\] is the program: an absolute path, or a name looked up on the
    /// jail's PATH inside the jail.
    pub argv: Vec<String>,
    /// Variables given for this run (`--env K=V`); they win over the profile.
    pub env: Vec<(String, String)>,
    pub profile: Arc<Profile>,
    /// Binds and tmpfs mounts on top of the profile's.
    pub binds: Vec<BindMount>,
    pub tmpfs: Vec<TmpfsMount>,
    pub hostname: Option<String>,
    pub network: Option<NetworkMode>,
    /// Limits on top of the profile's (each one set replaces the profile's).
    pub limits: Limits,
    /// The program's stdin, stdout and stderr; `None` inherits the caller's.
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// A network namespace made ahead of time for this jail; used when it
    /// serves the jail's mode (see [`PreparedNetwork::serves`]), else the
    /// jail makes its own at clone.
    pub network_ready: Option<PreparedNetwork>,
}

impl JailSpec {
    pub fn new(profile: Arc<Profile>, argv: Vec<String>) -> JailSpec {
        JailSpec {
            argv,
            env: Vec::new(),
            profile,
            binds: Vec::new(),
            tmpfs: Vec::new(),
            hostname: None,
            network: None,
            limits: Limits::default(),
            stdin: None,
            stdout: None,
            stderr: None,
            network_ready: None,
        }
    }

    pub fn hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.profile.hostname)
    }

    pub fn network(&self) -> NetworkMode {
        self.network.unwrap_or(self.profile.network)
    }

    pub fn limits(&self) -> Limits {
        self.profile.limits.overridden_by(&self.limits)
    }

    /// The program's whole environment: only the profile's pass-through
    /// names (when the caller has them), the profile's fixed values, this
    /// run's values, and PATH/HOME/TERM defaults when none of those set them.
    /// Nothing else of the caller's environment gets in.
    pub fn environment(&self, caller: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: String| match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k.to_string(), v)),
        };
        for name in &self.profile.env_pass {
            if let Some(v) = caller(name) {
                set(name, v);
            }
        }
        for (k, v) in &self.profile.env_set {
            set(k, v.clone());
        }
        for (k, v) in &self.env {
            set(k, v.clone());
        }
        for (k, v) in [("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"), ("HOME", "/tmp"), ("TERM", "dumb")] {
            if !env.iter().any(|(ek, _)| ek == k) {
                env.push((k.to_string(), v.to_string()));
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_is_clean_and_layered() {
        let mut profile = Profile::shipped("default").unwrap();
        profile.env_pass = vec!["LANG".into(), "MISSING".into()];
        profile.env_set.insert("A".into(), "profile".into());
        let mut spec = JailSpec::new(Arc::new(profile), vec!["true".into()]);
        spec.env.push(("A".into(), "run".into()));
        spec.env.push(("PATH".into(), "/custom".into()));
        let caller = |k: &str| match k {
            "LANG" => Some("C.UTF-8".to_string()),
            "SECRET" => Some("hunter2".to_string()),
            _ => None,
        };
        let env = spec.environment(caller);
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("LANG"), Some("C.UTF-8"));
        assert_eq!(get("A"), Some("run"));
        assert_eq!(get("PATH"), Some("/custom"));
        assert_eq!(get("HOME"), Some("/tmp"));
        assert_eq!(get("SECRET"), None);
        assert_eq!(get("MISSING"), None);
        assert_eq!(env.len(), 5, "{env:?}");
    }
}
