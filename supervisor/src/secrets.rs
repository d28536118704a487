//! The secret store: values that capabilities use on the host (an HTTP
//! executor's bearer token, a model key) and that never enter a jail.
//!
//! Two sources, merged by name:
//! - `<state_dir>/secrets.json`, `{"version":1,"secrets":{"NAME":"value"}}`,
//!   read and written by this module only. It must be a regular file owned
//!   by the daemon's effective uid with no group or other permission bits;
//!   anything else is refused, not repaired, because a file someone else
//!   could read or replace may already have leaked. Every change is written
//!   atomically (temp file created 0600, fsync, rename, fsync of the
//!   directory), under a `flock` on `secrets.json.lock` and after re-reading
//!   the file, so two writers (threads or processes) never lose an update.
//! - systemd credentials (`LoadCredential=`/`SetCredential=`): every regular
//!   file in `$CREDENTIALS_DIRECTORY` is a secret named by its file name.
//!   They are read-only here (systemd owns them) and win over a file entry
//!   of the same name. Files whose name or content cannot be a secret are
//!   skipped with a warning rather than failing start-up, since the unit may
//!   load credentials meant for something else.
//!
//! Names are `[A-Za-z0-9_.-]{1,64}`; values are 1 byte to 64 KiB of UTF-8
//! without NUL. A value is only ever held as a [`SecretValue`], whose Debug
//! and Display print `***REDACTED***`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// The store's file name under the state directory.
pub const SECRETS_FILE: &str = "secrets.json";
/// Held with `flock` while a change is read, applied and written.
const LOCK_FILE: &str = "secrets.json.lock";
/// The only format version this release reads and writes.
const FORMAT_VERSION: u32 = 1;
/// Longest secret name.
pub const MAX_NAME_LEN: usize = 64;
/// Largest secret value, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// What a secret prints as, wherever it is formatted.
pub const REDACTED: &str = "***REDACTED***";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("invalid secret name {name:?}: use 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ . -")]
    InvalidName { name: String },

    #[error("invalid value for secret `{name}`: {reason}")]
    InvalidValue { name: String, reason: &'static str },

    #[error(
        "secret `{name}` comes from systemd credentials ($CREDENTIALS_DIRECTORY) and is read-only here; \
         change it in the unit's LoadCredential=/SetCredential="
    )]
    ReadOnly { name: String },

    #[error("refusing to use {}: it is {kind}, not a regular file; remove it", .path.display())]
    NotRegularFile { path: PathBuf, kind: &'static str },

    #[error(
        "refusing to use {}: it is owned by uid {owner}, not by this daemon's uid {euid}; fix with: chown {euid} {}",
        .path.display(), .path.display()
    )]
    WrongOwner { path: PathBuf, owner: u32, euid: u32 },

    #[error(
        "refusing to use {}: its mode is {mode:04o}, which lets group or others access it; fix with: chmod 600 {}",
        .path.display(), .path.display()
    )]
    InsecureMode { path: PathBuf, mode: u32 },

    // The parse error is reduced to its position: serde_json's messages can
    // quote the offending value, which here could be a secret.
    #[error("{} is not a valid secret store (expected {{\"version\":1,\"secrets\":{{...}}}}): {what} at line {line}, column {column}", .path.display())]
    Malformed { path: PathBuf, what: &'static str, line: usize, column: usize },

    #[error("{} has version {found}; this ccos-supervisor reads version {FORMAT_VERSION} only", .path.display())]
    UnsupportedVersion { path: PathBuf, found: u32 },

    #[error("failed to {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, SecretError>;

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SecretError {
    let path = path.to_path_buf();
    move |source| SecretError::Io { action, path, source }
}

/// A secret's value. Formatting it prints `***REDACTED***`, so it cannot
/// reach a log line by accident; [`SecretValue::expose`] is the one way to
/// the text and is easy to grep for. On drop its buffer is overwritten
/// (best effort: copies made earlier, e.g. while parsing, are not).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value (unchecked: the store validates what it keeps).
    pub fn new(value: impl Into<String>) -> SecretValue {
        SecretValue(value.into())
    }

    /// The value itself: only for the executor that sends it on the host.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        // No `unsafe` and no zeroize crate: take the bytes out, overwrite
        // them, and keep the optimiser from dropping the dead stores.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// Checks a secret name: `[A-Za-z0-9_.-]{1,64}`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) {
        return Err(SecretError::InvalidName { name: name.to_string() });
    }
    Ok(())
}

/// Checks a value (never quoting it in the error).
fn validate_value(name: &str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        "it is empty"
    } else if value.len() > MAX_VALUE_LEN {
        "it is longer than 64 KiB"
    } else if value.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(SecretError::InvalidValue { name: name.to_string(), reason })
}

/// The file's format. Values are plain strings only while (de)serializing.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    secrets: BTreeMap<String, String>,
}

struct Entries {
    /// From `secrets.json`: the ones `set` and `delete` change.
    file: BTreeMap<String, SecretValue>,
    /// From `$CREDENTIALS_DIRECTORY`: read-only, and winning over `file`.
    credentials: BTreeMap<String, SecretValue>,
}

/// The daemon's secrets; see the module doc. Cheap to share behind an `Arc`.
pub struct SecretStore {
    dir: PathBuf,
    path: PathBuf,
    entries: Mutex<Entries>,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore").field("path", &self.path).field("names", &self.names()).finish()
    }
}

impl SecretStore {
    /// Opens the store in `state_dir` (the file may be absent: no secrets
    /// yet) and loads the credentials in `credentials_dir`, which the caller
    /// takes from `$CREDENTIALS_DIRECTORY`.
    pub fn open(state_dir: &Path, credentials_dir: Option<&Path>) -> Result<SecretStore> {
        let path = state_dir.join(SECRETS_FILE);
        let file = read_store_file(&path)?;
        let credentials = match credentials_dir {
            Some(dir) => read_credentials(dir)?,
            None => BTreeMap::new(),
        };
        for name in credentials.keys().filter(|name| file.contains_key(*name)) {
            tracing::warn!(secret = %name, "secret is both in {} and in systemd credentials; using the credential", path.display());
        }
        Ok(SecretStore { dir: state_dir.to_path_buf(), path, entries: Mutex::new(Entries { file, credentials }) })
    }

    /// The path of the store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A secret's value, credentials first.
    pub fn get(&self, name: &str) -> Option<SecretValue> {
        let entries = self.lock();
        entries.credentials.get(name).or_else(|| entries.file.get(name)).cloned()
    }

    /// Every secret's name, sorted, without values.
    pub fn names(&self) -> Vec<String> {
        let entries = self.lock();
        let mut names: Vec<String> = entries.file.keys().chain(entries.credentials.keys()).cloned().collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every value, for the [`crate::redact::Redactor`]'s known set.
    pub fn values(&self) -> Vec<SecretValue> {
        let entries = self.lock();
        entries.credentials.values().chain(entries.file.values()).cloned().collect()
    }

    /// Sets (adds or replaces) a secret and writes the file before returning.
    pub fn set(&self, name: &str, value: &str) -> Result<()> {
        validate_name(name)?;
        validate_value(name, value)?;
        self.change(name, |file| {
            file.insert(name.to_string(), SecretValue(value.to_string()));
        })
        .map(|_| ())
    }

    /// Deletes a secret; says whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        self.change(name, |file| file.remove(name).is_some())
    }

    /// Re-reads the file (after another process changed it).
    pub fn reload(&self) -> Result<()> {
        let file = read_store_file(&self.path)?;
        self.lock().file = file;
        Ok(())
    }

    /// Read, apply, write, all under the mutex (threads) and the flock
    /// (processes, e.g. ccosctl run on the host), so no update is lost.
    fn change<T>(&self, name: &str, apply: impl FnOnce(&mut BTreeMap<String, SecretValue>) -> T) -> Result<T> {
        let mut entries = self.lock();
        if entries.credentials.contains_key(name) {
            return Err(SecretError::ReadOnly { name: name.to_string() });
        }
        let _flock = self.flock()?;
        let mut file = read_store_file(&self.path)?;
        let result = apply(&mut file);
        write_store_file(&self.dir, &self.path, &file)?;
        entries.file = file;
        Ok(result)
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the maps half-changed
        // (each change replaces `file` whole), so a poisoned lock is usable.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn flock(&self) -> Result<Flock<File>> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("open", &path))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io_err("lock", &path)(io::Error::from_raw_os_error(errno as i32)))
    }
}

/// Reads and checks `secrets.json`; absent means empty.
fn read_store_file(path: &Path) -> Result<BTreeMap<String, SecretValue>> {
    // O_NOFOLLOW and checks on the opened file (not on the path), so the
    // file checked is the file read.
    let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(SecretError::NotRegularFile { path: path.to_path_buf(), kind: "a symbolic link" })
        }
        Err(e) => return Err(io_err("open", path)(e)),
    };
    check_file(path, &file)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_err("read", path))?;
    let parsed: StoreFile = serde_json::from_str(&text).map_err(|e| SecretError::Malformed {
        path: path.to_path_buf(),
        what: match e.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong field or type",
            serde_json::error::Category::Eof => "unexpected end",
        },
        line: e.line(),
        column: e.column(),
    })?;
    if parsed.version != FORMAT_VERSION {
        return Err(SecretError::UnsupportedVersion { path: path.to_path_buf(), found: parsed.version });
    }
    let mut secrets = BTreeMap::new();
    for (name, value) in parsed.secrets {
        validate_name(&name)?;
        validate_value(&name, &value)?;
        secrets.insert(name, SecretValue(value));
    }
    Ok(secrets)
}

/// Regular file, ours, no group/other bits.
fn check_file(path: &Path, file: &File) -> Result<()> {
    let meta = file.metadata().map_err(io_err("stat", path))?;
    if !meta.file_type().is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "a special file" };
        return Err(SecretError::NotRegularFile { path: path.to_path_buf(), kind });
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(SecretError::WrongOwner { path: path.to_path_buf(), owner: meta.uid(), euid });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::InsecureMode { path: path.to_path_buf(), mode });
    }
    Ok(())
}

/// Writes the file atomically: a reader sees the old file or the new one,
/// and after a crash the file is one of them, never a mix or empty.
fn write_store_file(dir: &Path, path: &Path, secrets: &BTreeMap<String, SecretValue>) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let body = StoreFile {
        version: FORMAT_VERSION,
        secrets: secrets.iter().map(|(name, value)| (name.clone(), value.expose().to_string())).collect(),
    };
    let mut text = serde_json::to_vec_pretty(&body).expect("a map of strings always serializes");
    text.push(b'\n');
    let tmp =
        dir.join(format!(".{SECRETS_FILE}.tmp.{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let written =
        write_new_file(&tmp, &text).and_then(|()| fs::rename(&tmp, path).map_err(io_err("rename into", path)));
    text.fill(0);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable only once the directory is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync", dir))
}

fn write_new_file(tmp: &Path, text: &[u8]) -> Result<()> {
    // create_new (O_EXCL): never write into a file someone planted there.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)
        .map_err(io_err("create", tmp))?;
    // The umask can only clear bits of 0600; set it exactly anyway, so the
    // file is 0600 whatever umask the daemon was started with.
    file.set_permissions(Permissions::from_mode(0o600)).map_err(io_err("chmod", tmp))?;
    file.write_all(text).map_err(io_err("write", tmp))?;
    file.sync_all().map_err(io_err("fsync", tmp))
}

/// Loads every usable regular file in the credentials directory.
fn read_credentials(dir: &Path) -> Result<BTreeMap<String, SecretValue>> {
    let mut secrets = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_err("read", dir))? {
        let entry = entry.map_err(io_err("read", dir))?;
        let path = entry.path();
        // file_type() does not follow symlinks: systemd writes plain files.
        if !entry.file_type().map_err(io_err("stat", &path))?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            tracing::warn!("skipping credential {}: its name is not UTF-8", path.display());
            continue;
        };
        if let Err(e) = validate_name(&name) {
            tracing::warn!("skipping credential {}: {e}", path.display());
            continue;
        }
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        let Ok(mut value) = String::from_utf8(bytes) else {
            tracing::warn!("skipping credential {}: its content is not UTF-8", path.display());
            continue;
        };
        // `echo secret > file` and most editors add one newline.
        if value.ends_with('\n') {
            value.pop();
        }
        let value = SecretValue(value);
        if let Err(e) = validate_value(&name, value.expose()) {
            tracing::warn!("skipping credential {}: {e}", path.display());
            continue;
        }
        secrets.insert(name, value);
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(dir.path(), None).unwrap();
        assert!(store.names().is_empty());
        store.set("OPENAI_KEY", "sk-one").unwrap();
        store.set("db.pass", "p@ss word\nline2").unwrap();
        store.set("OPENAI_KEY", "sk-two").unwrap();
        drop(store);

        let store = SecretStore::open(dir.path(), None).unwrap();
        assert_eq!(store.get("OPENAI_KEY").unwrap().expose(), "sk-two");
        assert_eq!(store.get("db.pass").unwrap().expose(), "p@ss word\nline2");
        assert!(store.get("missing").is_none());
        assert!(store.delete("OPENAI_KEY").unwrap());
        assert!(!store.delete("OPENAI_KEY").unwrap());
        drop(store);
        let store = SecretStore::open(dir.path(), None).unwrap();
        assert_eq!(store.names(), vec!["db.pass".to_string()]);
        // No temp files left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn file_is_0600_after_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(dir.path(), None).unwrap();
        store.set("A", "value-a").unwrap();
        assert_eq!(mode_of(&dir.path().join(SECRETS_FILE)), 0o600);
        assert_eq!(mode_of(&dir.path().join(LOCK_FILE)) & 0o077, 0);
    }

    #[test]
    fn world_readable_file_is_refused_with_mode_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRETS_FILE);
        fs::write(&path, r#"{"version":1,"secrets":{"A":"value-a"}}"#).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let err = SecretStore::open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("mode is 0644"), "{err}");
        assert!(err.contains(&format!("chmod 600 {}", path.display())), "{err}");
        assert!(!err.contains("value-a"), "{err}");

        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let store = SecretStore::open(dir.path(), None).unwrap();
        assert_eq!(store.get("A").unwrap().expose(), "value-a");
    }

    #[test]
    fn file_of_another_owner_is_refused() {
        // Only root can give a file away; elsewhere this test has nothing to do.
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRETS_FILE);
        fs::write(&path, r#"{"version":1,"secrets":{}}"#).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let err = SecretStore::open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534, not by this daemon's uid 0; fix with: chown 0"), "{err}");
    }

    #[test]
    fn symlink_and_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.json");
        fs::write(&target, r#"{"version":1,"secrets":{}}"#).unwrap();
        fs::set_permissions(&target, Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(SECRETS_FILE)).unwrap();
        let err = SecretStore::open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("a symbolic link, not a regular file"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(SECRETS_FILE)).unwrap();
        let err = SecretStore::open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("a directory, not a regular file"), "{err}");
    }

    #[test]
    fn malformed_file_error_does_not_quote_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRETS_FILE);
        fs::write(&path, r#"{"version":"hunter2-secret","secrets":{}}"#).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let err = SecretStore::open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("wrong field or type at line 1"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn names_and_values_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(dir.path(), None).unwrap();
        let err = store.set("bad name", "v").unwrap_err().to_string();
        assert!(err.contains("invalid secret name \"bad name\""), "{err}");
        assert!(store.set(&"x".repeat(65), "v").is_err());
        assert!(store.set(&"x".repeat(64), "v").is_ok());
        for (value, reason) in
            [("", "it is empty"), ("a\0b", "contains a NUL"), (&"v".repeat(MAX_VALUE_LEN + 1), "longer than 64 KiB")]
        {
            let err = store.set("N", value).unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
        }
        assert!(store.set("N", &"v".repeat(MAX_VALUE_LEN)).is_ok());
    }

    #[test]
    fn credentials_are_loaded_and_read_only() {
        let state = tempfile::tempdir().unwrap();
        let creds = tempfile::tempdir().unwrap();
        fs::write(creds.path().join("model_key"), "sk-from-systemd\n").unwrap();
        fs::write(creds.path().join("two_newlines"), "v\n\n").unwrap();
        fs::write(creds.path().join("bad name"), "skipped").unwrap();
        fs::write(creds.path().join("empty"), "\n").unwrap();
        fs::create_dir(creds.path().join("subdir")).unwrap();

        let store = SecretStore::open(state.path(), Some(creds.path())).unwrap();
        assert_eq!(store.get("model_key").unwrap().expose(), "sk-from-systemd");
        assert_eq!(store.get("two_newlines").unwrap().expose(), "v\n");
        assert_eq!(store.names(), vec!["model_key".to_string(), "two_newlines".to_string()]);

        let err = store.set("model_key", "other").unwrap_err().to_string();
        assert!(err.contains("comes from systemd credentials"), "{err}");
        let err = store.delete("model_key").unwrap_err().to_string();
        assert!(err.contains("comes from systemd credentials"), "{err}");
        assert_eq!(store.get("model_key").unwrap().expose(), "sk-from-systemd");
        assert!(!state.path().join(SECRETS_FILE).exists());
    }

    #[test]
    fn listing_and_formatting_never_show_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(dir.path(), None).unwrap();
        store.set("TOKEN", "hunter2-value").unwrap();
        let names = store.names();
        assert_eq!(names, vec!["TOKEN".to_string()]);
        let value = store.get("TOKEN").unwrap();
        for shown in [format!("{value:?}"), format!("{value}"), format!("{store:?}"), format!("{:?}", Some(&value))] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert_eq!(format!("{value:?}"), REDACTED);
        assert_eq!(format!("{value}"), REDACTED);
    }

    #[test]
    fn concurrent_sets_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SecretStore::open(dir.path(), None).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..10 {
                        store.set(&format!("s{t}_{i}"), &format!("value-{t}-{i}")).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.names().len(), 80);
        // A second store on the same file (as another process would be)
        // sees all of them, and its own change keeps them.
        let other = SecretStore::open(dir.path(), None).unwrap();
        assert_eq!(other.names().len(), 80);
        other.set("late", "value-late").unwrap();
        store.set("later", "value-later").unwrap();
        let reopened = SecretStore::open(dir.path(), None).unwrap();
        assert_eq!(reopened.names().len(), 82);
        assert_eq!(reopened.get("s7_9").unwrap().expose(), "value-7-9");
    }
}
