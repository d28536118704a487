//! Whether systemd delegated a cgroup to us. systemd >= 251 marks the cgroup
//! of a unit with Delegate=yes with the extended attribute `trusted.delegate`
//! (`user.delegate` for a user manager) set to "1".

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) fn delegated_by_systemd(dir: &Path) -> bool {
    is_one(dir, c"trusted.delegate") || is_one(dir, c"user.delegate")
}

/// True when the attribute exists and reads "1"; any error reads as false
/// (no attribute, no xattr support, not a directory).
fn is_one(path: &Path, name: &CStr) -> bool {
    let Ok(cpath) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 8];
    crate::sys::getxattr(&cpath, name, &mut buf).is_ok_and(|n| buf.get(..n) == Some(&b"1"[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_directories_are_not_delegated() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!delegated_by_systemd(dir.path()));
        assert!(!delegated_by_systemd(Path::new("/nonexistent/x")));
    }
}
