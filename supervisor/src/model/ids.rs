//! Opaque ids (`run_…`, `msg_…`): a prefix that says what the id names, then
//! 128 random bits in hex, so ids are unguessable and never collide in
//! practice. Randomness comes from /dev/urandom, which std can read without
//! `unsafe` and which never blocks once the kernel's pool is initialised (long
//! before a system service starts).

use std::fs::File;
use std::io::{self, Read};

pub const RUN_PREFIX: &str = "run";
pub const MESSAGE_PREFIX: &str = "msg";

/// A fresh id `<prefix>_<32 hex digits>`.
pub fn new_id(prefix: &str) -> io::Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let mut id = String::with_capacity(prefix.len() + 1 + 32);
    id.push_str(prefix);
    id.push('_');
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_differ() {
        let a = new_id(RUN_PREFIX).unwrap();
        let b = new_id(RUN_PREFIX).unwrap();
        assert!(a.starts_with("run_") && a.len() == 36, "{a}");
        assert!(a[4..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
