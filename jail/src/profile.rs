//! Jail profiles: TOML files that say what a jail is made of (ids, network,
//! environment, mounts, rlimits, cgroup limits and the seccomp profile).
//!
//! Loading is strict: an unknown field, a bad size or a seccomp profile that
//! does not compile stops the load with the file, the field and the reason.
//! The shipped profiles (`policies/*.toml`) are compiled into the binary so a
//! bare `ccos-jail run` works on a fresh machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::seccomp::{self, CompiledSeccomp};
use crate::size::{parse_bytes, parse_duration};

const SHIPPED: &[(&str, &str)] =
    &[("default", include_str!("../../policies/default.toml")), ("strict", include_str!("../../policies/strict.toml"))];

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("no shipped profile named {name:?} (shipped: default, strict); pass a path to a .toml file for your own")]
    UnknownShipped { name: String },
    #[error("reading profile {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("profile {origin}: {reason}")]
    Parse { origin: String, reason: String },
    #[error("profile {origin}: field `{field}`: {reason}")]
    Field { origin: String, field: String, reason: String },
    #[error("profile {origin}: seccomp profile: {source}")]
    Seccomp { origin: String, source: seccomp::SeccompError },
}

/// The network a jail gets. Either way it is a fresh network namespace: the
/// host's interfaces are never visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Only `lo`, and it is down: no address works at all.
    None,
    /// Only `lo`, up: the program can talk to itself on 127.0.0.1.
    Loopback,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "loopback" => Ok(Self::Loopback),
            other => Err(format!("unknown network mode {other:?} (expected none or loopback)")),
        }
    }
}

/// The file as written. Every field is optional; [`Profile`] is the resolved
/// form with defaults filled in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: Option<String>,
    hostname: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    network: Option<NetworkMode>,
    seccomp: Option<String>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: EnvFile,
    #[serde(default)]
    tmp: TmpFile,
    #[serde(default)]
    rlimits: BTreeMap<String, toml::Value>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default, rename = "mount")]
    mounts: Vec<MountFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvFile {
    #[serde(default)]
    pass: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TmpFile {
    size: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    memory: Option<String>,
    pids: Option<u64>,
    cpus: Option<f64>,
    time_limit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
enum MountFile {
    Bind {
        src: PathBuf,
        dst: PathBuf,
        #[serde(default)]
        rw: bool,
    },
    Tmpfs {
        dst: PathBuf,
        size: Option<String>,
    },
}

/// A bind mount of a host path into the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindMount {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub read_only: bool,
}

/// A fresh tmpfs in the jail, with a size cap in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TmpfsMount {
    pub dst: PathBuf,
    pub size_bytes: u64,
}

/// Cgroup limits and the wall-time limit of a jail. `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    pub time_limit: Option<std::time::Duration>,
}

impl Limits {
    /// Each limit set in `over` replaces the one here.
    pub fn overridden_by(self, over: &Limits) -> Limits {
        Limits {
            memory_bytes: over.memory_bytes.or(self.memory_bytes),
            pids: over.pids.or(self.pids),
            cpus: over.cpus.or(self.cpus),
            time_limit: over.time_limit.or(self.time_limit),
        }
    }
}

/// One resource limit applied to the program (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: i32,
    pub value: u64,
}

/// A resolved profile: what [`crate::spawn`] builds a jail from.
#[derive(Debug, Serialize)]
pub struct Profile {
    pub name: String,
    pub origin: String,
    pub hostname: String,
    pub uid: u32,
    pub gid: u32,
    pub network: NetworkMode,
    pub cwd: PathBuf,
    pub env_pass: Vec<String>,
    pub env_set: BTreeMap<String, String>,
    pub tmp_size_bytes: u64,
    pub rlimits: Vec<Rlimit>,
    pub limits: Limits,
    pub binds: Vec<BindMount>,
    pub tmpfs: Vec<TmpfsMount>,
    pub seccomp_source: String,
    #[serde(skip)]
    pub seccomp: Arc<CompiledSeccomp>,
    /// sha256 over this resolved profile and the compiled seccomp BPF:
    /// two runs with the same hash ran under the same rules.
    pub hash: String,
}

/// The rlimits a profile may set, by the name used in the file.
const RLIMIT_NAMES: &[(&str, i32)] = &[
    ("core", libc::RLIMIT_CORE as i32),
    ("nofile", libc::RLIMIT_NOFILE as i32),
    ("fsize", libc::RLIMIT_FSIZE as i32),
    ("nproc", libc::RLIMIT_NPROC as i32),
    ("stack", libc::RLIMIT_STACK as i32),
    ("memlock", libc::RLIMIT_MEMLOCK as i32),
    ("as", libc::RLIMIT_AS as i32),
    ("cpu", libc::RLIMIT_CPU as i32),
    ("data", libc::RLIMIT_DATA as i32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as i32),
    ("nice", libc::RLIMIT_NICE as i32),
    ("rtprio", libc::RLIMIT_RTPRIO as i32),
    ("sigpending", libc::RLIMIT_SIGPENDING as i32),
];

impl Profile {
    /// A shipped profile by name, or a TOML file when `name_or_path` looks
    /// like a path (contains a `/` or ends in `.toml`).
    pub fn resolve(name_or_path: &str) -> Result<Profile, ProfileError> {
        if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
            Self::load_file(Path::new(name_or_path))
        } else {
            Self::shipped(name_or_path)
        }
    }

    /// The names of the profiles compiled into the binary.
    pub fn shipped_names() -> impl Iterator<Item = &'static str> {
        SHIPPED.iter().map(|(name, _)| *name)
    }

    /// A profile compiled into the binary.
    pub fn shipped(name: &str) -> Result<Profile, ProfileError> {
        let text = SHIPPED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| ProfileError::UnknownShipped { name: name.to_string() })?;
        Self::parse(text, &format!("<shipped {name}>"), None)
    }

    /// A profile file; a relative `seccomp` path is taken from its folder.
    pub fn load_file(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ProfileError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text, &path.display().to_string(), path.parent())
    }

    /// Parses and resolves profile text. `dir` is where relative seccomp
    /// paths are looked up; `None` for shipped profiles.
    pub fn parse(text: &str, origin: &str, dir: Option<&Path>) -> Result<Profile, ProfileError> {
        let file: ProfileFile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_string(),
            reason: e.to_string().trim_end().replace('\n', " "),
        })?;
        let field_err = |field: &str, reason: String| ProfileError::Field {
            origin: origin.to_string(),
            field: field.to_string(),
            reason,
        };

        let seccomp_source = file.seccomp.unwrap_or_else(|| "default".to_string());
        let seccomp = load_seccomp(&seccomp_source, dir)
            .map_err(|source| ProfileError::Seccomp { origin: origin.to_string(), source })?;

        let mut rlimits = Vec::new();
        for (key, value) in &file.rlimits {
            let (name, resource) = RLIMIT_NAMES.iter().find(|(n, _)| n == key).ok_or_else(|| {
                let known: Vec<_> = RLIMIT_NAMES.iter().map(|(n, _)| *n).collect();
                field_err(&format!("rlimits.{key}"), format!("unknown rlimit (known: {})", known.join(", ")))
            })?;
            let value = match value {
                toml::Value::Integer(n) if *n >= 0 => *n as u64,
                toml::Value::String(s) if s == "unlimited" => libc::RLIM_INFINITY,
                toml::Value::String(s) => parse_bytes(s).map_err(|r| field_err(&format!("rlimits.{key}"), r))?,
                other => {
                    return Err(field_err(
                        &format!("rlimits.{key}"),
                        format!("expected a non-negative number, a size or \"unlimited\", found {other}"),
                    ))
                }
            };
            rlimits.push(Rlimit { name, resource: *resource, value });
        }

        let memory_bytes = match &file.limits.memory {
            Some(s) => Some(parse_bytes(s).map_err(|r| field_err("limits.memory", r))?),
            None => None,
        };
        let time_limit = match &file.limits.time_limit {
            Some(s) => Some(parse_duration(s).map_err(|r| field_err("limits.time_limit", r))?),
            None => None,
        };
        if let Some(c) = file.limits.cpus {
            if !(c.is_finite() && c > 0.0) {
                return Err(field_err("limits.cpus", format!("{c} must be a positive number of CPUs")));
            }
        }
        if file.limits.pids == Some(0) {
            return Err(field_err("limits.pids", "0 would forbid even the jail's init".into()));
        }
        let limits = Limits { memory_bytes, pids: file.limits.pids, cpus: file.limits.cpus, time_limit };

        let tmp_size_bytes = match &file.tmp.size {
            Some(s) => parse_bytes(s).map_err(|r| field_err("tmp.size", r))?,
            None => 64 << 20,
        };

        let mut binds = Vec::new();
        let mut tmpfs = Vec::new();
        for (i, m) in file.mounts.into_iter().enumerate() {
            match m {
                MountFile::Bind { src, dst, rw } => {
                    check_absolute(&src).map_err(|r| field_err(&format!("mount[{i}].src"), r))?;
                    check_absolute(&dst).map_err(|r| field_err(&format!("mount[{i}].dst"), r))?;
                    binds.push(BindMount { src, dst, read_only: !rw });
                }
                MountFile::Tmpfs { dst, size } => {
                    check_absolute(&dst).map_err(|r| field_err(&format!("mount[{i}].dst"), r))?;
                    let size_bytes = match size {
                        Some(s) => parse_bytes(&s).map_err(|r| field_err(&format!("mount[{i}].size"), r))?,
                        None => 16 << 20,
                    };
                    tmpfs.push(TmpfsMount { dst, size_bytes });
                }
            }
        }

        let cwd = file.cwd.unwrap_or_else(|| PathBuf::from("/"));
        check_absolute(&cwd).map_err(|r| field_err("cwd", r))?;
        let hostname = file.hostname.unwrap_or_else(|| "ccos".to_string());
        if hostname.is_empty() || hostname.len() > 64 {
            return Err(field_err("hostname", "must be 1 to 64 bytes".into()));
        }

        let mut profile = Profile {
            name: file.name.unwrap_or_else(|| origin.to_string()),
            origin: origin.to_string(),
            hostname,
            uid: file.uid.unwrap_or(1000),
            gid: file.gid.unwrap_or(1000),
            network: file.network.unwrap_or(NetworkMode::Loopback),
            cwd,
            env_pass: file.env.pass,
            env_set: file.env.set,
            tmp_size_bytes,
            rlimits,
            limits,
            binds,
            tmpfs,
            seccomp_source,
            seccomp,
            hash: String::new(),
        };
        if profile.uid >= crate::idmap::RANGE_SIZE || profile.gid >= crate::idmap::RANGE_SIZE {
            return Err(field_err(
                "uid",
                format!("uid and gid must be below {} (the size of a jail's id range)", crate::idmap::RANGE_SIZE),
            ));
        }
        profile.hash = profile.compute_hash();
        Ok(profile)
    }

    fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        // The serialized profile leaves out its labels (`name`, `origin`)
        // and `hash` on purpose: the same rules from another file hash the
        // same.
        let mut value = serde_json::to_value(self).expect("profile serializes");
        if let Some(map) = value.as_object_mut() {
            map.remove("name");
            map.remove("origin");
            map.remove("hash");
        }
        h.update(value.to_string().as_bytes());
        h.update(self.seccomp.hash().as_bytes());
        format!("sha256:{:x}", h.finalize())
    }
}

fn check_absolute(p: &Path) -> Result<(), String> {
    if !p.is_absolute() {
        return Err(format!("{} must be an absolute path", p.display()));
    }
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("{} must not contain `..`", p.display()));
    }
    Ok(())
}

/// A seccomp reference is a shipped name, or a path to an OCI JSON file
/// (relative paths are taken from the profile's folder).
fn load_seccomp(source: &str, dir: Option<&Path>) -> Result<Arc<CompiledSeccomp>, seccomp::SeccompError> {
    if let Some(text) = seccomp::shipped(source) {
        return seccomp::load_bytes(text.as_bytes(), &format!("<shipped {source}>"));
    }
    let path = Path::new(source);
    let path = match dir {
        Some(d) if path.is_relative() => d.join(path),
        _ => path.to_path_buf(),
    };
    seccomp::load_file(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_load() {
        let p = Profile::shipped("default").unwrap();
        assert_eq!(p.uid, 1000);
        assert_eq!(p.network, NetworkMode::Loopback);
        assert_eq!(p.limits.memory_bytes, Some(256 << 20));
        assert!(p.hash.starts_with("sha256:"));
        let s = Profile::shipped("strict").unwrap();
        assert_eq!(s.network, NetworkMode::None);
        assert_ne!(p.hash, s.hash);
    }

    #[test]
    fn unknown_shipped_name_is_named() {
        let e = Profile::resolve("nosuch").unwrap_err().to_string();
        assert!(e.contains("no shipped profile named \"nosuch\""), "{e}");
    }

    #[test]
    fn unknown_field_names_the_field() {
        let e = Profile::parse("hostnme = \"x\"\n", "t.toml", None).unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("hostnme"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            ("[limits]\nmemory = \"lots\"\n", "limits.memory"),
            ("[limits]\ntime_limit = \"-3s\"\n", "limits.time_limit"),
            ("[limits]\ncpus = 0.0\n", "limits.cpus"),
            ("[rlimits]\nnofiles = 3\n", "rlimits.nofiles"),
            ("[rlimits]\nnofile = true\n", "rlimits.nofile"),
            ("[tmp]\nsize = \"x\"\n", "tmp.size"),
            ("cwd = \"relative\"\n", "cwd"),
            ("[[mount]]\ntype = \"bind\"\nsrc = \"/a/../b\"\ndst = \"/b\"\n", "mount[0].src"),
            ("uid = 70000\n", "uid"),
        ];
        for (text, field) in cases {
            let e = Profile::parse(text, "t.toml", None).unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{text:?} gave {e}");
        }
        let e = Profile::parse("network = \"host\"\n", "t.toml", None).unwrap_err().to_string();
        assert!(e.contains("network") || e.contains("host"), "{e}");
    }

    #[test]
    fn missing_seccomp_file_is_named() {
        let e = Profile::parse("seccomp = \"/nonexistent/x.json\"\n", "t.toml", None).unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("/nonexistent/x.json"), "{e}");
    }

    #[test]
    fn hash_follows_content_not_origin() {
        let a = Profile::parse("hostname = \"a\"\n", "one.toml", None).unwrap();
        let b = Profile::parse("hostname = \"a\"\n", "two.toml", None).unwrap();
        let c = Profile::parse("hostname = \"c\"\n", "one.toml", None).unwrap();
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
    }

    #[test]
    fn overrides_replace_only_what_is_set() {
        let base = Limits { memory_bytes: Some(1), pids: Some(2), cpus: Some(1.0), time_limit: None };
        let over = Limits { pids: Some(9), ..Default::default() };
        let m = base.overridden_by(&over);
        assert_eq!(m.memory_bytes, Some(1));
        assert_eq!(m.pids, Some(9));
    }
}
