//! Kernel versions: the running one (for `minKernel`) and the ones profiles
//! write. A compile takes the version as an input so that tests can ask
//! what a profile does on another kernel.

use std::fmt;

/// A kernel version; releases compare by (major, minor, patch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Parses a release as uname prints it (`6.18.44-fc-v669`, `5.15.0-91-generic`):
    /// the leading `major.minor[.patch]`, whatever follows.
    pub fn parse_release(release: &str) -> Option<Self> {
        let mut parts = release.splitn(3, '.');
        let major = leading_number(parts.next()?)?;
        let minor = leading_number(parts.next()?)?;
        let patch = parts.next().and_then(leading_number).unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }

    /// Parses a profile's `minKernel`: strictly `major.minor` or
    /// `major.minor.patch`, digits only (Docker writes "4.8", "5.3").
    pub fn parse_min_kernel(text: &str) -> Option<Self> {
        let numbers: Vec<&str> = text.split('.').collect();
        if !(2..=3).contains(&numbers.len()) {
            return None;
        }
        let mut values = [0u32; 3];
        for (slot, n) in values.iter_mut().zip(&numbers) {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = n.parse().ok()?;
        }
        Some(Self::new(values[0], values[1], values[2]))
    }

    /// The running kernel (uname's release).
    pub fn running() -> std::io::Result<Self> {
        let uts = nix::sys::utsname::uname()?;
        let release = uts.release().to_string_lossy();
        Self::parse_release(&release).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unparsable kernel release {release:?}"))
        })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

fn leading_number(s: &str) -> Option<u32> {
    let end = s.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::KernelVersion as K;

    #[test]
    fn releases() {
        assert_eq!(K::parse_release("6.18.44-fc-v669"), Some(K::new(6, 18, 44)));
        assert_eq!(K::parse_release("5.15.0-91-generic"), Some(K::new(5, 15, 0)));
        assert_eq!(K::parse_release("6.1"), Some(K::new(6, 1, 0)));
        assert_eq!(K::parse_release("6.8-rc3"), Some(K::new(6, 8, 0)));
        assert_eq!(K::parse_release("x"), None);
        assert!(K::running().is_ok());
    }

    #[test]
    fn min_kernel() {
        assert_eq!(K::parse_min_kernel("4.8"), Some(K::new(4, 8, 0)));
        assert_eq!(K::parse_min_kernel("5.10.2"), Some(K::new(5, 10, 2)));
        for bad in ["4", "4.", "4.x", "v4.8", "4.8.1.2", "", "4.8-rc1"] {
            assert_eq!(K::parse_min_kernel(bad), None, "{bad}");
        }
        assert!(K::new(4, 8, 0) < K::new(4, 10, 0));
        assert!(K::new(6, 18, 44) >= K::new(4, 8, 0));
    }
}
