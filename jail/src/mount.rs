//! The jail's root file system: planned in the parent, built in the child.
//!
//! [`plan`] turns a profile's part of the root into a list of [`MountOp`]s,
//! and [`plan_run`] a run's part (its host name's files, its binds and
//! tmpfs); both check everything that can be checked before any namespace
//! exists (bind sources exist, destinations are absolute), so a typo fails
//! with its path, not as a mount error from inside the child. The child
//! replays them inside its new mount namespace, in two steps, so that a jail
//! can be made ahead of its run ([`crate::spawn::prepare`]):
//!
//! [`build_base_in_child`]:
//! 1. make every mount private, so nothing propagates back to the host;
//! 2. mount the jail's root, a tmpfs, over /tmp (ours only: the namespace
//!    is private; nothing bound by path comes from the host's /tmp, and
//!    the caller's binds come as trees the parent cloned);
//! 3. replay the profile's ops into it (host sources at their own paths).
//!
//! [`finish_root_in_child`]:
//! 4. replay the run's ops;
//! 5. pivot_root(".", ".") in it, which stacks the host tree on top of the
//!    new root, and detach that: the host tree is gone in one unmount;
//! 6. make / read-only. What is left is the tmpfs root, its binds, /proc,
//!    /dev and the tmpfs mounts, and nothing else of the host.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::profile::{BindMount, NetworkMode, TmpfsMount};
use crate::report::SetupFailure;
use crate::sys;

/// Host directories a program needs, bound read-only (or recreated as the
/// same symlink when the host has a merged /usr).
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/// Host files and folders of /etc that programs read, bound read-only when
/// present: the dynamic linker's cache, alternatives links, CA certificates
/// and the time zone.
const ETC_BINDS: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/localtime",
];
/// Device nodes bound from the host's /dev (the same set as bwrap's --dev).
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Parts of /proc that would let a process change the host kernel if it
/// could write them: made read-only (write attempts get EROFS).
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];

/// A bind source the parent cloned (see [`Plan::source_fds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTree {
    pub fd: RawFd,
    pub is_dir: bool,
}

/// What goes where. Paths in `dst`/`path` are inside the jail's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountOp {
    /// Bind a host path (or, with `from_jail`, a path already in the jail).
    Bind {
        src: PathBuf,
        dst: PathBuf,
        read_only: bool,
        from_jail: bool,
        /// A detached copy of `src` the parent made (see
        /// [`Plan::source_fds`]): the child attaches it instead of walking
        /// `src`.
        src_tree: Option<SourceTree>,
        /// Whether `src` is a directory, when the parent looked (host
        /// paths); the child looks itself at paths of the jail.
        src_is_dir: Option<bool>,
    },
    Tmpfs {
        dst: PathBuf,
        size_bytes: u64,
        mode: u32,
    },
    Proc {
        dst: PathBuf,
    },
    Devpts {
        dst: PathBuf,
    },
    Symlink {
        target: PathBuf,
        path: PathBuf,
    },
    File {
        path: PathBuf,
        contents: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("bind source {src} does not exist (for {dst})")]
    MissingSource { src: PathBuf, dst: PathBuf },
    #[error("bind source {src}: {source}")]
    Source { src: PathBuf, source: io::Error },
    #[error("mount destination {0} must be an absolute path without `..`")]
    BadDestination(PathBuf),
    #[error("mount destination {0} is the jail's root; bind into a folder below it")]
    RootDestination(PathBuf),
}

/// The inputs of [`plan`]: the profile's part of the root.
pub struct RootSpec<'a> {
    pub uid: u32,
    pub gid: u32,
    pub network: NetworkMode,
    pub tmp_size_bytes: u64,
    pub binds: &'a [BindMount],
    pub tmpfs: &'a [TmpfsMount],
}

/// The planned root: the ops, and the bind sources the parent opened.
#[derive(Debug)]
pub struct Plan {
    pub ops: Vec<MountOp>,
    /// Detached mount trees (open_tree(2) clones) of the spec's bind
    /// sources, made here by the (host root) parent. The child, whose ids
    /// are unprivileged on the host, attaches these (move_mount(2)) instead
    /// of walking the source paths: so a source under a folder only root
    /// may enter (a run's agent socket in its 0700 run folder) can still be
    /// bound, and what is bound is what was checked here, not something
    /// swapped in under the same path since. Inherited by the child at
    /// clone; closed there once the root is built, and here when the plan
    /// is dropped.
    pub source_fds: Vec<OwnedFd>,
}

impl Plan {
    /// The source fds' numbers, which the child must keep until it built
    /// the root.
    pub fn source_fd_numbers(&self) -> Vec<RawFd> {
        self.source_fds.iter().map(|fd| fd.as_raw_fd()).collect()
    }
}

/// Plans the root. Runs in the parent, before clone.
pub fn plan(spec: &RootSpec<'_>) -> Result<Plan, MountError> {
    let mut ops = Vec::new();
    let mut source_fds = Vec::new();
    for dir in SYSTEM_DIRS {
        add_host_path(&mut ops, Path::new(dir))?;
    }
    ops.push(MountOp::File { path: "/etc/passwd".into(), contents: passwd(spec.uid, spec.gid).into_bytes() });
    ops.push(MountOp::File { path: "/etc/group".into(), contents: group(spec.gid).into_bytes() });
    ops.push(MountOp::File {
        path: "/etc/nsswitch.conf".into(),
        contents: b"passwd: files\ngroup: files\nshadow: files\nhosts: files\n".to_vec(),
    });
    // No resolv.conf: neither network mode has a route to a resolver.
    let _ = spec.network;
    for path in ETC_BINDS {
        add_host_path(&mut ops, Path::new(path))?;
    }

    ops.push(MountOp::Proc { dst: "/proc".into() });
    for name in PROC_READ_ONLY {
        let p = PathBuf::from("/proc").join(name);
        // Present in every kernel we support except `fs` on some configs:
        // the child skips the ones its /proc does not have.
        ops.push(MountOp::Bind {
            src: p.clone(),
            dst: p,
            read_only: true,
            from_jail: true,
            src_tree: None,
            src_is_dir: None,
        });
    }

    // /dev is a directory of the root's tmpfs, read-only with it: a tmpfs
    // of its own would be one more superblock made and torn down per jail.
    for dev in DEVICES {
        let p = PathBuf::from("/dev").join(dev);
        ops.push(MountOp::Bind {
            src: p.clone(),
            dst: p,
            read_only: false,
            from_jail: false,
            src_tree: None,
            src_is_dir: Some(false),
        });
    }
    ops.push(MountOp::Devpts { dst: "/dev/pts".into() });
    ops.push(MountOp::Symlink { target: "pts/ptmx".into(), path: "/dev/ptmx".into() });
    ops.push(MountOp::Symlink { target: "/proc/self/fd".into(), path: "/dev/fd".into() });
    for (i, name) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        ops.push(MountOp::Symlink {
            target: format!("/proc/self/fd/{i}").into(),
            path: PathBuf::from("/dev").join(name),
        });
    }
    ops.push(MountOp::Tmpfs { dst: "/dev/shm".into(), size_bytes: spec.tmp_size_bytes, mode: 0o1777 });

    ops.push(MountOp::Tmpfs { dst: "/tmp".into(), size_bytes: spec.tmp_size_bytes, mode: 0o1777 });

    add_binds_and_tmpfs(&mut ops, &mut source_fds, spec.binds, spec.tmpfs)?;
    Ok(Plan { ops, source_fds })
}

/// Plans a run's part of the root: the files naming its host, and its own
/// binds and tmpfs, on top of (after) the profile's.
pub fn plan_run(hostname: &str, binds: &[BindMount], tmpfs: &[TmpfsMount]) -> Result<Plan, MountError> {
    let mut ops = vec![
        MountOp::File { path: "/etc/hostname".into(), contents: format!("{hostname}\n").into_bytes() },
        MountOp::File {
            path: "/etc/hosts".into(),
            contents: format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost {hostname}\n").into_bytes(),
        },
    ];
    let mut source_fds = Vec::new();
    add_binds_and_tmpfs(&mut ops, &mut source_fds, binds, tmpfs)?;
    Ok(Plan { ops, source_fds })
}

/// Binds (each source cloned here, see [`Plan::source_fds`]) then tmpfs.
fn add_binds_and_tmpfs(
    ops: &mut Vec<MountOp>,
    source_fds: &mut Vec<OwnedFd>,
    binds: &[BindMount],
    tmpfs: &[TmpfsMount],
) -> Result<(), MountError> {
    for b in binds {
        check_destination(&b.dst)?;
        let source = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => MountError::MissingSource { src: b.src.clone(), dst: b.dst.clone() },
            _ => MountError::Source { src: b.src.clone(), source: e },
        };
        let is_dir = std::fs::metadata(&b.src).map_err(source)?.is_dir();
        let fd = clone_source(&b.src).map_err(source)?;
        ops.push(MountOp::Bind {
            src: b.src.clone(),
            dst: b.dst.clone(),
            read_only: b.read_only,
            from_jail: false,
            src_tree: Some(SourceTree { fd: fd.as_raw_fd(), is_dir }),
            src_is_dir: Some(is_dir),
        });
        source_fds.push(fd);
    }
    for t in tmpfs {
        check_destination(&t.dst)?;
        ops.push(MountOp::Tmpfs { dst: t.dst.clone(), size_bytes: t.size_bytes, mode: 0o1777 });
    }
    Ok(())
}

/// A detached bind of `path` (following symlinks, as a bind does).
fn clone_source(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    sys::clone_tree(&c)
}

fn check_destination(dst: &Path) -> Result<(), MountError> {
    if !dst.is_absolute() || dst.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(MountError::BadDestination(dst.to_path_buf()));
    }
    if dst == Path::new("/") {
        return Err(MountError::RootDestination(dst.to_path_buf()));
    }
    Ok(())
}

/// A host path as the jail should see it: the same symlink, a read-only
/// bind, or nothing when the host does not have it.
fn add_host_path(ops: &mut Vec<MountOp>, path: &Path) -> Result<(), MountError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(path).map_err(|source| MountError::Source { src: path.into(), source })?;
            ops.push(MountOp::Symlink { target, path: path.into() });
        }
        Ok(meta) => ops.push(MountOp::Bind {
            src: path.into(),
            dst: path.into(),
            read_only: true,
            from_jail: false,
            src_tree: None,
            src_is_dir: Some(meta.is_dir()),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(MountError::Source { src: path.into(), source }),
    }
    Ok(())
}

fn passwd(uid: u32, gid: u32) -> String {
    let mut s = String::from("root:x:0:0:root:/root:/bin/sh\n");
    if uid != 0 {
        s.push_str(&format!("ccos:x:{uid}:{gid}:ccos jail user:/tmp:/bin/sh\n"));
    }
    s.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    s
}

fn group(gid: u32) -> String {
    let mut s = String::from("root:x:0:\n");
    if gid != 0 {
        s.push_str(&format!("ccos:x:{gid}:\n"));
    }
    s.push_str("nogroup:x:65534:\n");
    s
}

// ---- child side -------------------------------------------------------

/// Where the jail's root is mounted while it is being built.
const NEW_ROOT: &str = "/tmp";

fn fail(step: &str, what: String, err: impl Into<io::Error>) -> SetupFailure {
    let err: io::Error = err.into();
    SetupFailure {
        step: step.to_string(),
        message: format!("{what}: {err}"),
        errno: err.raw_os_error(),
        exit_code: 125,
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| CString::new("/invalid-path-with-nul").unwrap())
}

/// Prefixes a jail path with where the new root is mounted right now.
fn in_new_root(p: &Path) -> PathBuf {
    let rel = p.strip_prefix("/").unwrap_or(p);
    Path::new(NEW_ROOT).join(rel)
}

/// Builds the profile's part of the root, not yet entered. Runs inside the
/// child, in its new mount and user namespaces, with the capabilities of
/// that user namespace.
pub fn build_base_in_child(ops: &[MountOp]) -> Result<(), SetupFailure> {
    // 1. Nothing we mount may propagate back to the host's namespace.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| fail("mount", "making / private".into(), e))?;

    // 2. The jail's root.
    mount_tmpfs(Path::new(NEW_ROOT), 4 << 20, 0o755)?;

    // 3. The profile's part, with modes exactly as given.
    apply_all(ops)
}

/// Adds the run's part to the root [`build_base_in_child`] built, and
/// enters it: from here on the host's tree is gone.
pub fn finish_root_in_child(ops: &[MountOp]) -> Result<(), SetupFailure> {
    // 4. The run's part.
    apply_all(ops)?;

    // 5. Make the new root the root and let go of the host tree:
    // pivot_root(".", ".") stacks the old root on top of the new one, and
    // detaching "." takes it off (pivot_root(2), "NOTES"; as runc does).
    nix::unistd::chdir(NEW_ROOT).map_err(|e| fail("mount", format!("chdir {NEW_ROOT}"), e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| fail("pivot_root", "into the jail's root".into(), e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| fail("mount", "detaching the host's tree".into(), e))?;
    nix::unistd::chdir("/").map_err(|e| fail("mount", "chdir /".into(), e))?;

    // 6. The root itself is read-only; /tmp, /dev/shm and rw binds are not.
    sys::make_read_only(c"/", false).map_err(|e| fail("mount", "making / read-only".into(), e))?;
    Ok(())
}

/// Replays `ops` into the new root, under a umask of 0 (modes exactly as
/// given).
fn apply_all(ops: &[MountOp]) -> Result<(), SetupFailure> {
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let mut dirs = Dirs::default();
    let applied = ops.iter().try_for_each(|op| apply(op, &mut dirs));
    nix::sys::stat::umask(umask);
    applied
}

fn apply(op: &MountOp, dirs: &mut Dirs) -> Result<(), SetupFailure> {
    match op {
        MountOp::Bind { src, dst, read_only, from_jail, src_tree, src_is_dir } => {
            let target = in_new_root(dst);
            let bound = match src_tree {
                Some(tree) => {
                    make_mount_point(dirs, &target, tree.is_dir)?;
                    sys::attach_tree(tree.fd, &cpath(&target))
                }
                None => {
                    let source = if *from_jail { in_new_root(src) } else { src.clone() };
                    let is_dir = match src_is_dir {
                        Some(is_dir) => *is_dir,
                        None => match std::fs::metadata(&source) {
                            Ok(m) => m.is_dir(),
                            // Optional parts of /proc a kernel may not have.
                            Err(e) if *from_jail && e.kind() == io::ErrorKind::NotFound => return Ok(()),
                            Err(e) => return Err(fail("mount", format!("bind source {}", src.display()), e)),
                        },
                    };
                    // A path of the jail bound onto itself (the /proc
                    // masks) is its own mount point.
                    if source != target {
                        make_mount_point(dirs, &target, is_dir)?;
                    }
                    mount(Some(&source), &target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                        .map_err(io::Error::from)
                }
            };
            dirs.mounted_on(&target);
            bound.map_err(|e| fail("mount", format!("binding {} on {}", src.display(), dst.display()), e))?;
            if *read_only {
                sys::make_read_only(&cpath(&target), true)
                    .map_err(|e| fail("mount", format!("making {} read-only", dst.display()), e))?;
            }
        }
        MountOp::Tmpfs { dst, size_bytes, mode } => {
            let target = in_new_root(dst);
            make_mount_point(dirs, &target, true)?;
            mount_tmpfs(&target, *size_bytes, *mode)?;
            dirs.mounted_on(&target);
        }
        MountOp::Proc { dst } => {
            let target = in_new_root(dst);
            make_mount_point(dirs, &target, true)?;
            dirs.mounted_on(&target);
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            // hidepid: the program sees only processes of its own uid. The
            // jail's init is a clone of its spawner, so its command line
            // (host paths, --env values) is none of the program's business.
            mount(Some("proc"), &target, Some("proc"), flags, Some("hidepid=invisible"))
                .map_err(|e| fail("mount", format!("mounting proc on {}", dst.display()), e))?;
            // No user namespaces below the jail's, whatever its seccomp
            // profile allows (Podman's allows them): new namespaces are
            // where most kernel attack surface opens up to an unprivileged
            // process. The limit is per user namespace, so this changes the
            // jail's alone; it must be written before /proc/sys is made
            // read-only. Creating one then fails with ENOSPC.
            let limit = target.join("sys/user/max_user_namespaces");
            std::fs::write(&limit, b"0").map_err(|e| fail("mount", format!("writing 0 to {}", limit.display()), e))?;
        }
        MountOp::Devpts { dst } => {
            let target = in_new_root(dst);
            make_mount_point(dirs, &target, true)?;
            dirs.mounted_on(&target);
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
            mount(Some("devpts"), &target, Some("devpts"), flags, Some("newinstance,ptmxmode=0666,mode=620"))
                .map_err(|e| fail("mount", format!("mounting devpts on {}", dst.display()), e))?;
        }
        MountOp::Symlink { target, path } => {
            let link = in_new_root(path);
            dirs.make_parent(&link)?;
            std::os::unix::fs::symlink(target, &link)
                .map_err(|e| fail("mount", format!("symlink {} -> {}", path.display(), target.display()), e))?;
        }
        MountOp::File { path, contents } => {
            let file = in_new_root(path);
            dirs.make_parent(&file)?;
            // 0644 exactly: the umask is 0 while the root is built.
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&file)
                .and_then(|mut f| io::Write::write_all(&mut f, contents))
                .map_err(|e| fail("mount", format!("writing {}", path.display()), e))?;
        }
    }
    Ok(())
}

fn mount_tmpfs(target: &Path, size_bytes: u64, mode: u32) -> Result<(), SetupFailure> {
    let data = format!("size={size_bytes},mode={mode:o}");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(data.as_str()))
        .map_err(|e| fail("mount", format!("mounting tmpfs ({data}) on {}", target.display()), e))
}

/// Directories known to exist in the new root, so that each is made (or
/// found there) once rather than once per path below it.
#[derive(Default)]
struct Dirs(std::collections::HashSet<PathBuf>);

impl Dirs {
    /// Makes `dir` and what is missing above it, mode 0755 (under the
    /// umask of 0 set while the root is built).
    fn make(&mut self, dir: &Path) -> Result<(), SetupFailure> {
        if self.0.contains(dir) || dir == Path::new(NEW_ROOT) || dir == Path::new("/") {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.make(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail("mount", format!("creating {}", dir.display()), e)),
        }
        self.0.insert(dir.to_path_buf());
        Ok(())
    }

    fn make_parent(&mut self, path: &Path) -> Result<(), SetupFailure> {
        path.parent().map_or(Ok(()), |parent| self.make(parent))
    }

    /// Something was mounted on `target`: what was known below it is
    /// hidden now.
    fn mounted_on(&mut self, target: &Path) {
        self.0.retain(|d| d == target || !d.starts_with(target));
    }
}

/// A directory or an empty file to mount on, created if missing. An
/// existing file is used as it is (one such as /proc/sysrq-trigger cannot
/// even be opened for writing). A file is made with one mknod, not a stat,
/// an open and a close: the root's device nodes and /etc files are a dozen
/// of them per jail.
fn make_mount_point(dirs: &mut Dirs, target: &Path, is_dir: bool) -> Result<(), SetupFailure> {
    if is_dir {
        return dirs.make(target);
    }
    dirs.make_parent(target)?;
    // 0644 exactly: the umask is 0 while the root is built.
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
    match nix::sys::stat::mknod(target, nix::sys::stat::SFlag::S_IFREG, mode, 0) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(fail("mount", format!("creating mount point {}", target.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(binds: &'a [BindMount], tmpfs: &'a [TmpfsMount]) -> RootSpec<'a> {
        RootSpec { uid: 1000, gid: 1000, network: NetworkMode::Loopback, tmp_size_bytes: 1 << 20, binds, tmpfs }
    }

    #[test]
    fn plan_has_the_minimal_root() {
        let ops = plan(&spec(&[], &[])).unwrap().ops;
        let has = |f: &dyn Fn(&MountOp) -> bool| ops.iter().any(f);
        assert!(has(&|o| matches!(o, MountOp::Bind { dst, read_only: true, .. } if dst == Path::new("/usr"))));
        assert!(has(&|o| matches!(o, MountOp::Proc { .. })));
        assert!(has(&|o| matches!(o, MountOp::Tmpfs { dst, mode: 0o1777, .. } if dst == Path::new("/tmp"))));
        assert!(has(&|o| matches!(o, MountOp::File { path, contents } if path == Path::new("/etc/passwd")
            && String::from_utf8_lossy(contents).contains("ccos:x:1000:1000"))));
        // Nothing of the host's /etc secrets, /sys, /home or /root.
        for banned in ["/etc/shadow", "/sys", "/home", "/root", "/var", "/etc/resolv.conf"] {
            assert!(
                !ops.iter().any(|o| matches!(o, MountOp::Bind { dst, .. } if dst == Path::new(banned))),
                "{banned}"
            );
        }
    }

    #[test]
    fn missing_bind_source_is_named() {
        let binds = [BindMount { src: "/nonexistent/ccos".into(), dst: "/work".into(), read_only: true }];
        let e = plan(&spec(&binds, &[])).unwrap_err().to_string();
        assert_eq!(e, "bind source /nonexistent/ccos does not exist (for /work)");
    }

    #[test]
    fn bind_sources_are_cloned_by_the_parent() {
        // open_tree(OPEN_TREE_CLONE) needs CAP_SYS_ADMIN; the root tests
        // bind through it for real (tests/jail.rs).
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let binds = [BindMount { src: "/usr/bin".into(), dst: "/tools".into(), read_only: true }];
        let plan = plan(&spec(&binds, &[])).unwrap();
        assert_eq!(plan.source_fds.len(), 1);
        let fd = plan.source_fd_numbers()[0];
        let bind = plan.ops.iter().find(|o| matches!(o, MountOp::Bind { dst, .. } if dst == Path::new("/tools")));
        let tree = SourceTree { fd, is_dir: true };
        assert!(matches!(bind, Some(MountOp::Bind { src_tree: Some(t), .. }) if *t == tree), "{bind:?}");
    }

    #[test]
    fn a_runs_part_names_its_host_and_is_checked_like_the_profiles() {
        let ops = plan_run("box", &[], &[TmpfsMount { dst: "/scratch".into(), size_bytes: 4096 }]).unwrap().ops;
        let file = |name: &str| {
            ops.iter().find_map(|o| match o {
                MountOp::File { path, contents } if path == Path::new(name) => {
                    Some(String::from_utf8_lossy(contents).into_owned())
                }
                _ => None,
            })
        };
        assert_eq!(file("/etc/hostname").as_deref(), Some("box\n"));
        assert!(file("/etc/hosts").is_some_and(|h| h.contains("localhost box")));
        assert!(
            matches!(ops.last(), Some(MountOp::Tmpfs { dst, size_bytes: 4096, .. }) if dst == Path::new("/scratch"))
        );
        let binds = [BindMount { src: "/nonexistent/ccos".into(), dst: "/work".into(), read_only: true }];
        let e = plan_run("box", &binds, &[]).unwrap_err().to_string();
        assert_eq!(e, "bind source /nonexistent/ccos does not exist (for /work)");
        let binds = [BindMount { src: "/usr".into(), dst: "/".into(), read_only: true }];
        assert!(plan_run("box", &binds, &[]).is_err());
    }

    #[test]
    fn bad_destinations_are_refused() {
        for dst in ["relative", "/a/../b", "/"] {
            let binds = [BindMount { src: "/usr".into(), dst: dst.into(), read_only: true }];
            assert!(plan(&spec(&binds, &[])).is_err(), "{dst}");
        }
    }
}
