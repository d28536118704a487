//! Seccomp profiles in the OCI / Docker JSON format, compiled to BPF for
//! x86_64 with seccompiler, for a jail that holds no capabilities.
//!
//! The way through: JSON text -> `types.rs` (strict serde schema) ->
//! `plan.rs` (checks, and which rules apply here) -> `compile.rs` (stacked
//! seccompiler filters + the hand-built guard of `filter.rs`) -> `fold.rs`
//! (the stack as one program that answers the same) ->
//! [`CompiledSeccomp`], installed in the jailed child by `install.rs`.
//! README.md next to this file explains the choices and the shipped
//! profiles.
//!
//! ```no_run
//! let compiled = ccos_jail::seccomp::load_file(std::path::Path::new("profile.json"))?;
//! println!("{}", compiled.describe());
//! // In the child, after no_new_privs, right before execve:
//! compiled.install()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod arch;
mod caps;
mod compile;
mod describe;
mod disk_cache;
mod errno;
mod error;
mod filter;
mod fold;
mod install;
mod jsonpath;
mod kernel;
mod model;
mod names;
mod plan;
mod syscalls;
mod types;

#[cfg(test)]
mod bpf_eval;
#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use seccompiler::BpfProgram;
use sha2::{Digest, Sha256};

pub use disk_cache::use_disk_cache;
pub use error::SeccompError;
pub use kernel::KernelVersion;

/// A seccomp profile compiled for this machine: the BPF programs to
/// install, in order, and the hash stamped on every run that used them.
#[derive(Debug)]
pub struct CompiledSeccomp {
    programs: Vec<BpfProgram>,
    flags: libc::c_ulong,
    hash: String,
    source: Source,
}

/// Where a [`CompiledSeccomp`] came from, for [`CompiledSeccomp::describe`]:
/// the disk cache keeps only what a jail installs, not the plan.
#[derive(Debug)]
enum Source {
    /// Compiled in this process: the plan, and the stack of programs
    /// compile.rs made of it (what the installed program was folded from).
    Compiled { plan: model::Plan, stack: Vec<compile::Program> },
    /// Read from the disk cache: the profile, compiled again by describe()
    /// (`check-profile` prints it once; a jail's spawn path never asks).
    DiskCache { bytes: Vec<u8>, origin: String, kernel: KernelVersion },
}

impl CompiledSeccomp {
    /// `sha256:<hex>` over the BPF instructions installed, in order (each
    /// as the kernel's 8-byte struct sock_filter, little-endian), followed
    /// by the seccomp() flags word when a profile sets flags. The same BPF
    /// from differently written JSON has the same hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Installs every program, in order, with seccomp(2). Runs in the jailed
    /// child after no_new_privs, as the last step before execve: it does
    /// not allocate and takes no lock.
    pub fn install(&self) -> Result<(), std::io::Error> {
        install::install(&self.programs, self.flags)
    }

    /// A human summary for `ccos-jail check-profile`.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Compiled { plan, stack } => describe::describe(plan, stack, &self.programs, &self.hash),
            // The entry was written by a compile of these very bytes by this
            // build, so this compiles; if it somehow does not, say so rather
            // than panic in a diagnostic.
            Source::DiskCache { bytes, origin, kernel } => match compile(bytes, origin, *kernel) {
                Ok(fresh) => fresh.describe(),
                Err(e) => {
                    format!("seccomp filter {} (from the disk cache; compiling it again failed: {e})\n", self.hash)
                }
            },
        }
    }

    /// The BPF programs, in installation order.
    pub fn programs(&self) -> impl DoubleEndedIterator<Item = &[seccompiler::sock_filter]> + ExactSizeIterator {
        self.programs.iter().map(|p| p.as_slice())
    }
}

#[cfg(test)]
impl CompiledSeccomp {
    /// The plan of a profile compiled in this process (tests only).
    fn plan(&self) -> &model::Plan {
        match &self.source {
            Source::Compiled { plan, .. } => plan,
            Source::DiskCache { .. } => panic!("no plan: loaded from the disk cache"),
        }
    }

    /// The stack compile.rs made, before folding (tests only).
    fn stack(&self) -> &[compile::Program] {
        match &self.source {
            Source::Compiled { stack, .. } => stack,
            Source::DiskCache { .. } => panic!("no stack: loaded from the disk cache"),
        }
    }

    /// Each stacked program's role, in installation order (tests only).
    fn roles(&self) -> Vec<compile::Role> {
        self.stack().iter().map(|p| p.role.clone()).collect()
    }
}

/// Parses and compiles a profile for x86_64 and the given kernel version
/// (which decides `minKernel`). No cache: see [`load_bytes`].
pub fn compile(bytes: &[u8], origin: &str, kernel: KernelVersion) -> Result<CompiledSeccomp, SeccompError> {
    // One parse of the text: serde would read a JSON array where an object
    // belongs as the object's fields in order, so look at the tree first,
    // then deserialize the tree.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| SeccompError::from_json(origin, bytes, &e))?;
    if let Some(path) = types::array_instead_of_object(&value) {
        let path = if path.is_empty() { "(top level)".to_string() } else { path };
        return Err(SeccompError::invalid(origin, path, "expected a JSON object, found an array"));
    }
    let profile: types::Profile = match serde::Deserialize::deserialize(&value) {
        Ok(p) => p,
        // Errors from the tree have no line and column; parse the text
        // again for them (only on this error path).
        Err(_) => {
            let e = serde_json::from_slice::<types::Profile>(bytes).expect_err("the tree did not deserialize");
            return Err(SeccompError::from_json(origin, bytes, &e));
        }
    };
    let plan = plan::plan(&profile, origin, kernel)?;
    let stack = compile::compile(&plan, origin)?;
    let bpfs: Vec<BpfProgram> = stack.iter().map(|p| p.bpf.clone()).collect();
    // One program installs faster than a stack and runs once per syscall;
    // a stack that cannot be folded is installed as it is.
    let programs = match bpfs.len() {
        0 | 1 => bpfs,
        _ => fold::fold(&bpfs).map_or(bpfs, |one| vec![one]),
    };
    let flags = plan.flags;
    let hash = hash_programs(&programs, flags);
    Ok(CompiledSeccomp { programs, flags, hash, source: Source::Compiled { plan, stack } })
}

/// Parses and compiles a profile for the running kernel, once per content:
/// a long-lived process asking again for the same bytes gets the same
/// `Arc`. `origin` names the input in errors.
pub fn load_bytes(bytes: &[u8], origin: &str) -> Result<Arc<CompiledSeccomp>, SeccompError> {
    let kernel = running_kernel().map_err(|source| SeccompError::Kernel { origin: origin.to_string(), source })?;
    load_cached(bytes, origin, kernel)
}

/// [`load_bytes`] on a file's contents; errors name the file.
pub fn load_file(path: &Path) -> Result<Arc<CompiledSeccomp>, SeccompError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| SeccompError::Read { origin: origin.clone(), source })?;
    load_bytes(&bytes, &origin)
}

/// The profiles shipped with the jail (policies/seccomp/<name>.json):
/// "default" and "strict".
pub fn shipped(name: &str) -> Option<&'static str> {
    match name {
        "default" => Some(include_str!("../../../policies/seccomp/default.json")),
        "strict" => Some(include_str!("../../../policies/seccomp/strict.json")),
        _ => None,
    }
}

/// Cache key: the input bytes themselves (hashed by the map with SipHash, a
/// tenth of sha256's cost on every load), and the kernel version that
/// decided `minKernel`.
type CacheKey = (Vec<u8>, KernelVersion);

/// How many compiled profiles the cache keeps; past that it starts over
/// (a supervisor uses a handful of profiles, so this only bounds abuse).
const CACHE_LIMIT: usize = 256;

fn load_cached(bytes: &[u8], origin: &str, kernel: KernelVersion) -> Result<Arc<CompiledSeccomp>, SeccompError> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Arc<CompiledSeccomp>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key: CacheKey = (bytes.to_vec(), kernel);
    // A panic elsewhere while holding the lock leaves a usable map behind.
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(Arc::clone(hit));
    }
    // Compile without the lock; if another thread won the race, keep its copy.
    // The disk cache, when the process turned it on, sits behind this one.
    let compiled = Arc::new(match disk_cache::dir() {
        Some(dir) => disk_cache::load_or_compile(dir, bytes, origin, kernel)?,
        None => compile(bytes, origin, kernel)?,
    });
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= CACHE_LIMIT {
        map.clear();
    }
    Ok(Arc::clone(map.entry(key).or_insert(compiled)))
}

fn running_kernel() -> std::io::Result<KernelVersion> {
    static RUNNING: OnceLock<KernelVersion> = OnceLock::new();
    if let Some(k) = RUNNING.get() {
        return Ok(*k);
    }
    let k = KernelVersion::running()?;
    Ok(*RUNNING.get_or_init(|| k))
}

/// One BPF instruction as 8 bytes: code (u16), jt, jf, k (u32), integers
/// little-endian. What the hash covers, and how the disk cache stores it.
fn insn_bytes(insn: &seccompiler::sock_filter) -> [u8; 8] {
    let [c0, c1] = insn.code.to_le_bytes();
    let [k0, k1, k2, k3] = insn.k.to_le_bytes();
    [c0, c1, insn.jt, insn.jf, k0, k1, k2, k3]
}

fn hash_programs(programs: &[BpfProgram], flags: libc::c_ulong) -> String {
    let mut h = Sha256::new();
    for p in programs {
        for insn in p {
            h.update(insn_bytes(insn));
        }
    }
    if flags != 0 {
        h.update(flags.to_le_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
