//! An on-disk cache of compiled programs, for processes that live for one
//! jail (the `ccos-jail` CLI): parsing, planning and compiling a profile
//! costs a few hundred microseconds of every spawn, the same each time.
//!
//! Off unless the process calls [`use_disk_cache`]; the in-memory cache of
//! mod.rs stays in front of it. A file holds only what a jail installs: the
//! programs and the seccomp() flags (the hash is computed again from them).
//!
//! What a file says becomes a jail's filter, so a file is trusted only as
//! far as its directory: the directory must be a real directory (not a
//! symlink) owned by our euid with no group or other write bit, and files
//! are opened relative to it. Anything else about the cache (missing,
//! untrusted, unreadable, corrupt, full disk) is a miss: compile as usual,
//! never fail and never print. Each build of the executable has keys of its
//! own, so a write also removes the oldest entries past a bound.
//!
//! File `<hex key>.bpf`, integers little-endian: `MAGIC`, `FORMAT` (u32),
//! the key (32 bytes), flags (c_ulong: 8 bytes), the number of programs
//! (u32), per program its length (u32) and its instructions (8 bytes each:
//! code u16, jt u8, jf u8, k u32), then sha256 of all that.

use std::fs::{File, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use nix::fcntl::{open, openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use seccompiler::{sock_filter, BpfProgram};
use sha2::{Digest, Sha256};

use super::compile::{MAX_INSNS, MAX_INSNS_PER_PATH};
use super::{compile, hash_programs, insn_bytes, CompiledSeccomp, KernelVersion, SeccompError, Source};

const MAGIC: [u8; 8] = *b"ccosbpf\0";
/// Bumped when the file layout or the key's inputs change.
const FORMAT: u32 = 1;
const KEY_LEN: usize = 32;
const SUM_LEN: usize = 32;
/// Magic, format, key, flags, number of programs.
const HEADER_LEN: usize = MAGIC.len() + 4 + KEY_LEN + FLAGS_LEN + 4;
/// The flags word as seccomp() takes it (8 bytes on x86_64; the key holds
/// the architecture, so no file is read where it is another size).
const FLAGS_LEN: usize = std::mem::size_of::<libc::c_ulong>();
/// Each program counts as its length plus 4 against MAX_INSNS_PER_PATH and
/// has at least one instruction.
const MAX_PROGRAMS: usize = MAX_INSNS_PER_PATH / 5;
/// A program takes 4 + 8 * length bytes, less than 8 * (length + 4).
const MAX_FILE_LEN: usize = HEADER_LEN + 8 * MAX_INSNS_PER_PATH + SUM_LEN;
/// The flags plan.rs can produce; any other bit in a file is corruption.
const KNOWN_FLAGS: libc::c_ulong = libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;

/// Entries a directory keeps at most: every build of ccos-jail has keys of
/// its own, so without a bound each rebuild would leave its entries behind.
/// Far more than one build's profiles need; past it, the oldest go.
const MAX_ENTRIES: usize = 64;
/// A temporary file this old belongs to a writer that died before renaming
/// it (a live writer renames within microseconds).
const STALE_TMP_SECS: i64 = 60;

type Key = [u8; KEY_LEN];

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Turns on the disk cache for this process: compiled programs are kept in
/// `dir` (made 0700 if missing) and read back by later processes. For
/// short-lived processes like the `ccos-jail` CLI; the first call wins, and
/// it should come before the first profile is loaded. A long-lived process
/// does not need it: the in-memory cache already compiles a profile once.
pub fn use_disk_cache(dir: PathBuf) {
    let _ = DIR.set(dir);
}

pub(super) fn dir() -> Option<&'static Path> {
    DIR.get().map(PathBuf::as_path)
}

/// The programs for `bytes` from the cache in `dir`, or compiled and then
/// stored there. Errors are the compile's own only.
pub(super) fn load_or_compile(
    dir: &Path,
    bytes: &[u8],
    origin: &str,
    kernel: KernelVersion,
) -> Result<CompiledSeccomp, SeccompError> {
    let cache = key(bytes, kernel).and_then(|key| Some((key, open_dir(dir)?)));
    if let Some((key, dirfd)) = &cache {
        if let Some((programs, flags)) = read(dirfd, key) {
            let hash = hash_programs(&programs, flags);
            let source = Source::DiskCache { bytes: bytes.to_vec(), origin: origin.to_string(), kernel };
            return Ok(CompiledSeccomp { programs, flags, hash, source });
        }
    }
    let compiled = compile(bytes, origin, kernel)?;
    if let Some((key, dirfd)) = &cache {
        if write(dirfd, key, &compiled).is_ok() {
            prune(dirfd, &file_name(key));
        }
    }
    Ok(compiled)
}

/// sha256 over everything the compiled programs depend on. The crate
/// version alone would not do: a rebuild with a changed compiler keeps the
/// version, so the running executable's identity is in the key too (None
/// when it cannot be read: then no cache, rather than a stale one).
fn key(bytes: &[u8], kernel: KernelVersion) -> Option<Key> {
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(FORMAT.to_le_bytes());
    // Variable-length fields carry their length, so no two inputs run together.
    for field in [env!("CARGO_PKG_VERSION").as_bytes(), std::env::consts::ARCH.as_bytes()] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field);
    }
    // A new build is a new file: another inode, size or time.
    for n in [exe.dev(), exe.ino(), exe.size()] {
        h.update(n.to_le_bytes());
    }
    for t in [exe.mtime(), exe.mtime_nsec(), exe.ctime(), exe.ctime_nsec()] {
        h.update(t.to_le_bytes());
    }
    for n in [kernel.major, kernel.minor, kernel.patch] {
        h.update(n.to_le_bytes());
    }
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
    Some(h.finalize().into())
}

fn file_name(key: &Key) -> String {
    let mut name = String::with_capacity(2 * KEY_LEN + 4);
    for b in key {
        name.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        name.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    name.push_str(".bpf");
    name
}

/// The cache directory, opened, if it can be trusted; made first if it is
/// missing. Held open so that every file is read and written in the
/// directory that was checked, whatever happens to the path meanwhile.
fn open_dir(dir: &Path) -> Option<OwnedFd> {
    let created = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            // Racing processes: the loser's AlreadyExists is fine, it then
            // checks the winner's directory like any other.
            std::fs::DirBuilder::new().mode(0o700).create(dir).is_ok()
        }
        _ => false,
    };
    // O_NOFOLLOW: a symlink in the last component fails (ELOOP).
    let fd =
        open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let file = File::from(fd);
    if created {
        // The umask may have taken some of 0700 (and only ever removes
        // bits); set it exactly, on the directory we made and hold.
        file.set_permissions(Permissions::from_mode(0o700)).ok()?;
    }
    let meta = file.metadata().ok()?;
    (meta.is_dir() && trusted(&meta)).then(|| file.into())
}

/// Ours alone to write.
fn trusted(meta: &std::fs::Metadata) -> bool {
    meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o022 == 0
}

fn read(dirfd: &OwnedFd, key: &Key) -> Option<(Vec<BpfProgram>, libc::c_ulong)> {
    // O_NONBLOCK: opening a FIFO planted here must not hang (it is then
    // refused as not a regular file); no effect on a regular file.
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
    let file = File::from(openat(dirfd, file_name(key).as_str(), flags, Mode::empty()).ok()?);
    let meta = file.metadata().ok()?;
    if !meta.is_file() || !trusted(&meta) || meta.len() > MAX_FILE_LEN as u64 {
        return None;
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_LEN as u64 + 1).read_to_end(&mut data).ok()?;
    decode(&data, key)
}

/// Writes the entry under a temporary name, then renames it into place:
/// readers see the old file or the whole new one, and of processes racing
/// to write the same entry the last rename wins (they write the same
/// bytes). No fsync: a file cut short by a crash fails its checksum, which
/// is a miss, and is replaced.
fn write(dirfd: &OwnedFd, key: &Key, compiled: &CompiledSeccomp) -> std::io::Result<()> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let data = encode(key, &compiled.programs, compiled.flags);
    let name = file_name(key);
    let tmp = format!(".{name}.{}.{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut file = File::from(openat(dirfd, tmp.as_str(), flags, Mode::from_bits_truncate(0o600))?);
    let written = file
        // As for the directory: exactly 0600 whatever the umask.
        .set_permissions(Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(&data))
        .and_then(|()| renameat(dirfd, tmp.as_str(), dirfd, name.as_str()).map_err(std::io::Error::from));
    if written.is_err() {
        let _ = unlinkat(dirfd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    written
}

/// Keeps the directory bounded, after a write (a miss: once per profile and
/// build): the oldest entries past [`MAX_ENTRIES`] by modification time,
/// never `kept` (the one just written), and temporary files of writers that
/// died. Only names this cache makes are touched, and only in the directory
/// that was checked. A reader racing with a removal misses and compiles.
fn prune(dirfd: &OwnedFd, kept: &str) {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let Ok(mut dir) = nix::dir::Dir::openat(dirfd, ".", flags, Mode::empty()) else { return };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let mut entries = Vec::new();
    for found in dir.iter().flatten() {
        let Ok(name) = found.file_name().to_str() else { continue };
        let temporary = name.starts_with('.') && name.ends_with(".tmp");
        if name == kept || !(temporary || is_entry_name(name)) {
            continue;
        }
        let Ok(st) = fstatat(dirfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
        if !temporary {
            entries.push(((st.st_mtime, st.st_mtime_nsec), name.to_owned()));
        } else if now - st.st_mtime > STALE_TMP_SECS {
            let _ = unlinkat(dirfd, name, UnlinkatFlags::NoRemoveDir);
        }
    }
    // The entry just written counts too.
    let excess = (entries.len() + 1).saturating_sub(MAX_ENTRIES);
    entries.sort();
    for (_, name) in entries.into_iter().take(excess) {
        let _ = unlinkat(dirfd, name.as_str(), UnlinkatFlags::NoRemoveDir);
    }
}

/// A name [`file_name`] makes.
fn is_entry_name(name: &str) -> bool {
    name.strip_suffix(".bpf").is_some_and(|hex| {
        hex.len() == 2 * KEY_LEN && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn encode(key: &Key, programs: &[BpfProgram], flags: libc::c_ulong) -> Vec<u8> {
    let insns: usize = programs.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + 4 * programs.len() + 8 * insns + SUM_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(programs.len() as u32).to_le_bytes());
    for p in programs {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        for insn in p {
            out.extend_from_slice(&insn_bytes(insn));
        }
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The programs and flags of a file for `key`, or None for anything
/// unexpected: size, checksum, magic, format, key, flags, or lengths past
/// the kernel's limits.
fn decode(data: &[u8], key: &Key) -> Option<(Vec<BpfProgram>, libc::c_ulong)> {
    if data.len() < HEADER_LEN + SUM_LEN || data.len() > MAX_FILE_LEN {
        return None;
    }
    let (body, sum) = data.split_at(data.len() - SUM_LEN);
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let mut r = Reader(body);
    if r.array()? != MAGIC || u32::from_le_bytes(r.array()?) != FORMAT || r.array::<KEY_LEN>()? != *key {
        return None;
    }
    let flags = libc::c_ulong::from_le_bytes(r.array()?);
    if flags & !KNOWN_FLAGS != 0 {
        return None;
    }
    let count = u32::from_le_bytes(r.array()?) as usize;
    if count > MAX_PROGRAMS {
        return None;
    }
    let mut programs = Vec::with_capacity(count);
    let mut total = 0;
    for _ in 0..count {
        let len = u32::from_le_bytes(r.array()?) as usize;
        total += len + 4;
        if len == 0 || len > MAX_INSNS || total > MAX_INSNS_PER_PATH {
            return None;
        }
        let program = r
            .take(8 * len)?
            .chunks_exact(8)
            .map(|i| sock_filter {
                code: u16::from_le_bytes([i[0], i[1]]),
                jt: i[2],
                jf: i[3],
                k: u32::from_le_bytes([i[4], i[5], i[6], i[7]]),
            })
            .collect();
        programs.push(program);
    }
    if !r.0.is_empty() {
        return None;
    }
    Some((programs, flags))
}

/// The unread rest of a file's body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    use super::*;
    use crate::seccomp::shipped;
    use crate::seccomp::tests::{fixture, KERNEL};

    fn default_json() -> Vec<u8> {
        shipped("default").unwrap().as_bytes().to_vec()
    }

    fn from_disk(c: &CompiledSeccomp) -> bool {
        matches!(c.source, Source::DiskCache { .. })
    }

    fn assert_same(got: &CompiledSeccomp, want: &CompiledSeccomp) {
        assert_eq!(got.programs, want.programs);
        assert_eq!(got.flags, want.flags);
        assert_eq!(got.hash, want.hash);
    }

    /// The file names in `dir`, sorted.
    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn mkdir(path: &Path, mode: u32) {
        fs::create_dir(path).unwrap();
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    fn entry_path(dir: &Path, bytes: &[u8], kernel: KernelVersion) -> PathBuf {
        dir.join(file_name(&key(bytes, kernel).unwrap()))
    }

    /// An entry for `bytes` holding the strict profile's programs instead:
    /// well formed, so it loads exactly when the cache is trusted.
    fn plant(dir: &Path, bytes: &[u8]) -> CompiledSeccomp {
        let strict = compile(shipped("strict").unwrap().as_bytes(), "strict", KERNEL).unwrap();
        let key = key(bytes, KERNEL).unwrap();
        let path = dir.join(file_name(&key));
        fs::write(&path, encode(&key, &strict.programs, strict.flags)).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        strict
    }

    /// `body` with its checksum: files that pass the checksum but must
    /// still be refused.
    fn seal(mut body: Vec<u8>) -> Vec<u8> {
        let sum = Sha256::digest(&body);
        body.extend_from_slice(&sum);
        body
    }

    /// A sealed file of programs of the given lengths (each instruction a
    /// `ret ALLOW`).
    fn file_of(key: &Key, flags: libc::c_ulong, lens: &[u32]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&FORMAT.to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&(lens.len() as u32).to_le_bytes());
        for &len in lens {
            b.extend_from_slice(&len.to_le_bytes());
            for _ in 0..len {
                b.extend_from_slice(&[0x06, 0, 0, 0, 0, 0, 0xff, 0x7f]);
            }
        }
        seal(b)
    }

    #[test]
    fn an_entry_reads_back_as_a_fresh_compile() {
        let profiles = [
            default_json(),
            fixture("docker-default.json"),
            // Flags, and no program at all.
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                 "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#
                .to_vec(),
            br#"{"defaultAction": "SCMP_ACT_ALLOW"}"#.to_vec(),
        ];
        for bytes in profiles {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("a/cache");
            let fresh = compile(&bytes, "t", KERNEL).unwrap();
            let first = load_or_compile(&dir, &bytes, "t", KERNEL).unwrap();
            assert!(!from_disk(&first));
            assert_same(&first, &fresh);
            let meta = fs::symlink_metadata(&dir).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.mode() & 0o7777, 0o700);
            let path = entry_path(&dir, &bytes, KERNEL);
            assert_eq!(entries(&dir), [path.file_name().unwrap().to_string_lossy()]);
            assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);

            let second = load_or_compile(&dir, &bytes, "t", KERNEL).unwrap();
            assert!(from_disk(&second));
            assert_same(&second, &fresh);
            assert_eq!(second.describe(), fresh.describe());
        }
        assert_ne!(compile(&default_json(), "t", KERNEL).unwrap().programs().len(), 0);
    }

    /// Makes `name` in `dir`, last modified `age` ago.
    fn file_aged(dir: &Path, name: &str, age: std::time::Duration) {
        let file = fs::File::create(dir.join(name)).unwrap();
        file.set_modified(std::time::SystemTime::now() - age).unwrap();
    }

    #[test]
    fn a_write_keeps_the_directory_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        mkdir(&dir, 0o700);
        let minutes = |m: u64| std::time::Duration::from_secs(60 * m);
        // Entries of earlier builds, a minute apart, oldest first.
        let earlier: Vec<String> = (0..MAX_ENTRIES + 5).map(|i| file_name(&[i as u8; KEY_LEN])).collect();
        for (i, name) in earlier.iter().enumerate() {
            file_aged(&dir, name, minutes(1000 - i as u64));
        }
        // Not the cache's names: never touched, however old.
        file_aged(&dir, "notes.txt", minutes(5000));
        file_aged(&dir, &file_name(&[0xAB; KEY_LEN]).to_uppercase(), minutes(5000));
        // Temporary files: a dead writer's, and one being written now.
        file_aged(&dir, ".dead.1.0.tmp", minutes(10));
        file_aged(&dir, ".live.2.0.tmp", minutes(0));

        let bytes = default_json();
        load_or_compile(&dir, &bytes, "t", KERNEL).unwrap();
        let written = entry_path(&dir, &bytes, KERNEL).file_name().unwrap().to_string_lossy().into_owned();
        let names = entries(&dir);
        assert_eq!(names.iter().filter(|n| is_entry_name(n)).count(), MAX_ENTRIES, "{names:?}");
        assert!(names.contains(&written));
        // One more than the bound was there with the new one: the six
        // oldest went.
        for (i, name) in earlier.iter().enumerate() {
            assert_eq!(names.contains(name), i >= 6, "entry {i} ({name})");
        }
        for kept in ["notes.txt", ".live.2.0.tmp"] {
            assert!(names.iter().any(|n| n == kept), "{kept} was removed: {names:?}");
        }
        assert!(names.iter().any(|n| n.ends_with(".BPF")));
        assert!(!names.iter().any(|n| n == ".dead.1.0.tmp"));

        // A hit writes nothing, so removes nothing.
        let before = entries(&dir);
        assert!(from_disk(&load_or_compile(&dir, &bytes, "t", KERNEL).unwrap()));
        assert_eq!(entries(&dir), before);
    }

    #[test]
    fn a_damaged_entry_is_a_miss_and_is_replaced() {
        let bytes = default_json();
        let fresh = compile(&bytes, "t", KERNEL).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        load_or_compile(&dir, &bytes, "t", KERNEL).unwrap();
        let path = entry_path(&dir, &bytes, KERNEL);
        let good = fs::read(&path).unwrap();
        let key = key(&bytes, KERNEL).unwrap();
        assert!(decode(&good, &key).is_some());
        for i in (0..good.len()).step_by(7).chain([good.len() - 1]) {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad, &key).is_none(), "byte {i} of {}", good.len());
        }
        for len in [0, 1, HEADER_LEN, HEADER_LEN + SUM_LEN, good.len() - 1] {
            assert!(decode(&good[..len], &key).is_none(), "{len} bytes");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer, &key).is_none());

        for damage in [good[..good.len() / 2].to_vec(), Vec::new(), {
            let mut bad = good.clone();
            bad[good.len() / 2] ^= 1;
            bad
        }] {
            fs::write(&path, &damage).unwrap();
            let c = load_or_compile(&dir, &bytes, "t", KERNEL).unwrap();
            assert!(!from_disk(&c));
            assert_same(&c, &fresh);
            assert_eq!(fs::read(&path).unwrap(), good, "rewritten");
            assert!(from_disk(&load_or_compile(&dir, &bytes, "t", KERNEL).unwrap()));
        }
    }

    #[test]
    fn sealed_nonsense_is_refused() {
        let key = [7u8; KEY_LEN];
        assert!(decode(&file_of(&key, 0, &[1, 2]), &key).is_some());
        assert!(decode(&file_of(&key, 0, &[]), &key).is_some());
        assert!(decode(&file_of(&key, 0, &[1]), &[8; KEY_LEN]).is_none(), "another key");
        assert!(decode(&file_of(&key, KNOWN_FLAGS, &[1]), &key).is_some());
        assert!(decode(&file_of(&key, 1 << 40, &[1]), &key).is_none(), "unknown flag");
        assert!(decode(&file_of(&key, 0, &[0]), &key).is_none(), "empty program");
        assert!(decode(&file_of(&key, 0, &[4096]), &key).is_some());
        assert!(decode(&file_of(&key, 0, &[4097]), &key).is_none(), "over BPF_MAXINSNS");
        assert!(decode(&file_of(&key, 0, &[4092; 8]), &key).is_some());
        assert!(decode(&file_of(&key, 0, &[4093; 8]), &key).is_none(), "over MAX_INSNS_PER_PATH");

        // Edit a good file's body and seal it again.
        let good = file_of(&key, 0, &[3]);
        let edited = |at: usize, with: &[u8]| {
            let mut body = good[..good.len() - SUM_LEN].to_vec();
            body.splice(at..at + with.len(), with.iter().copied());
            decode(&seal(body), &key)
        };
        assert!(edited(0, b"CCOSBPF\0").is_none(), "magic");
        assert!(edited(8, &2u32.to_le_bytes()).is_none(), "format");
        assert!(edited(52, &2u32.to_le_bytes()).is_none(), "more programs than written");
        assert!(edited(52, &u32::MAX.to_le_bytes()).is_none(), "absurd count");
        assert!(edited(52, &0u32.to_le_bytes()).is_none(), "fewer programs than written");
        assert!(edited(56, &4u32.to_le_bytes()).is_none(), "longer than written");
        assert!(edited(56, &u32::MAX.to_le_bytes()).is_none(), "absurd length");
        assert!(edited(56, &3u32.to_le_bytes()).is_some());
        let mut extra = good[..good.len() - SUM_LEN].to_vec();
        extra.push(0);
        assert!(decode(&seal(extra), &key).is_none(), "trailing byte");
    }

    #[test]
    fn only_a_directory_of_our_own_is_trusted() {
        let bytes = default_json();
        let fresh = compile(&bytes, "t", KERNEL).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // Where the cache is trusted, the planted entry is what loads, so
        // below a fresh compile means the cache was not used.
        let good = tmp.path().join("good");
        mkdir(&good, 0o700);
        let strict = plant(&good, &bytes);
        let c = load_or_compile(&good, &bytes, "t", KERNEL).unwrap();
        assert!(from_disk(&c));
        assert_eq!(c.programs, strict.programs);
        let good_entries = entries(&good);

        let untrusted = |dir: &Path| {
            let c = load_or_compile(dir, &bytes, "t", KERNEL).unwrap();
            assert!(!from_disk(&c), "{}", dir.display());
            assert_same(&c, &fresh);
        };
        for mode in [0o777, 0o720, 0o702, 0o1777] {
            let dir = tmp.path().join(format!("mode-{mode:o}"));
            mkdir(&dir, mode);
            plant(&dir, &bytes);
            let before = entries(&dir);
            untrusted(&dir);
            assert_eq!(entries(&dir), before, "nothing written");
            assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, mode, "left as it was");
        }

        // A symlink, even to a good directory; and one to nowhere creates nothing.
        let link = tmp.path().join("link");
        symlink(&good, &link).unwrap();
        untrusted(&link);
        let dangling = tmp.path().join("dangling");
        symlink(tmp.path().join("nowhere"), &dangling).unwrap();
        untrusted(&dangling);
        assert!(!tmp.path().join("nowhere").exists());
        assert_eq!(entries(&good), good_entries);

        // Only root can give a directory or a file away.
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: the other-owner cases need root");
            return;
        }
        let nobody = Some(nix::unistd::Uid::from_raw(65534));
        let theirs = tmp.path().join("theirs");
        mkdir(&theirs, 0o700);
        plant(&theirs, &bytes);
        nix::unistd::chown(&theirs, nobody, None).unwrap();
        untrusted(&theirs);
        // In a good directory, a file of another owner is a miss and is
        // replaced by ours.
        let path = entry_path(&good, &bytes, KERNEL);
        nix::unistd::chown(&path, nobody, None).unwrap();
        untrusted(&good);
        assert_eq!(fs::metadata(&path).unwrap().uid(), 0);
        assert_same(&load_or_compile(&good, &bytes, "t", KERNEL).unwrap(), &fresh);
    }

    #[test]
    fn a_group_writable_file_is_a_miss() {
        let bytes = default_json();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        mkdir(&dir, 0o700);
        plant(&dir, &bytes);
        let path = entry_path(&dir, &bytes, KERNEL);
        fs::set_permissions(&path, Permissions::from_mode(0o620)).unwrap();
        let c = load_or_compile(&dir, &bytes, "t", KERNEL).unwrap();
        assert!(!from_disk(&c));
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600, "replaced");
    }

    #[test]
    fn the_key_covers_the_kernel_and_the_profile() {
        let bytes = fixture("docker-default.json");
        let k = key(&bytes, KERNEL).unwrap();
        assert_eq!(key(&bytes, KERNEL), Some(k));
        for other in [KernelVersion::new(6, 18, 45), KernelVersion::new(6, 19, 44), KernelVersion::new(4, 4, 0)] {
            assert_ne!(key(&bytes, other), Some(k), "{other}");
        }
        let mut changed = bytes.clone();
        changed.push(b'\n');
        assert_ne!(key(&changed, KERNEL), Some(k));

        // docker-default.json allows ptrace from 4.8 on: an entry made for
        // one kernel is never read for another.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let (old, new) = (KernelVersion::new(4, 4, 0), KernelVersion::new(4, 8, 0));
        load_or_compile(&dir, &bytes, "t", old).unwrap();
        let c = load_or_compile(&dir, &bytes, "t", new).unwrap();
        assert!(!from_disk(&c));
        assert_same(&c, &compile(&bytes, "t", new).unwrap());
        assert_ne!(c.hash, compile(&bytes, "t", old).unwrap().hash);
        assert_eq!(entries(&dir).len(), 2);
        assert_same(&load_or_compile(&dir, &bytes, "t", old).unwrap(), &compile(&bytes, "t", old).unwrap());
    }

    #[test]
    fn racing_processes_leave_one_good_entry() {
        let bytes = fixture("docker-default.json");
        let fresh = compile(&bytes, "t", KERNEL).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..5 {
                        assert_same(&load_or_compile(&dir, &bytes, "t", KERNEL).unwrap(), &fresh);
                    }
                });
            }
        });
        // No temporary file left behind.
        let path = entry_path(&dir, &bytes, KERNEL);
        assert_eq!(entries(&dir), [path.file_name().unwrap().to_string_lossy()]);
    }

    #[test]
    fn compile_errors_are_not_cached() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let bad = br#"{"defaultAction": "SCMP_ACT_NOPE"}"#;
        let first = load_or_compile(&dir, bad, "bad.json", KERNEL).unwrap_err().to_string();
        assert_eq!(first, compile(bad, "bad.json", KERNEL).unwrap_err().to_string());
        assert!(entries(&dir).is_empty());
    }
}
