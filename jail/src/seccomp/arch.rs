//! Architecture spellings. Profiles spell architectures two ways: libseccomp
//! names in `architectures` / `archMap` (`SCMP_ARCH_X86_64`) and Go's GOARCH
//! names in `includes.arches` / `excludes.arches` (`amd64`, `arm64`, `386`),
//! with a few extras (`x86`, `x32`, `ppc64le`). We compile for x86_64 only;
//! what matters is whether a list names x86_64, and that a misspelled
//! architecture is an error rather than a silently unmatched rule.

/// (canonical name, accepted spellings, compared ignoring ASCII case).
const ARCHES: &[(&str, &[&str])] = &[
    ("x86_64", &["SCMP_ARCH_X86_64", "amd64", "x86_64", "x86-64"]),
    ("x86", &["SCMP_ARCH_X86", "x86", "386", "i386", "i686"]),
    ("x32", &["SCMP_ARCH_X32", "x32"]),
    ("arm", &["SCMP_ARCH_ARM", "arm"]),
    ("aarch64", &["SCMP_ARCH_AARCH64", "arm64", "aarch64"]),
    ("mips", &["SCMP_ARCH_MIPS", "mips"]),
    ("mipsel", &["SCMP_ARCH_MIPSEL", "mipsel", "mipsle"]),
    ("mips64", &["SCMP_ARCH_MIPS64", "mips64"]),
    ("mipsel64", &["SCMP_ARCH_MIPSEL64", "mipsel64", "mips64le"]),
    ("mips64n32", &["SCMP_ARCH_MIPS64N32", "mips64n32"]),
    ("mipsel64n32", &["SCMP_ARCH_MIPSEL64N32", "mipsel64n32", "mips64n32le"]),
    ("ppc", &["SCMP_ARCH_PPC", "ppc"]),
    ("ppc64", &["SCMP_ARCH_PPC64", "ppc64"]),
    ("ppc64le", &["SCMP_ARCH_PPC64LE", "ppc64le"]),
    ("s390", &["SCMP_ARCH_S390", "s390"]),
    ("s390x", &["SCMP_ARCH_S390X", "s390x"]),
    ("parisc", &["SCMP_ARCH_PARISC", "parisc"]),
    ("parisc64", &["SCMP_ARCH_PARISC64", "parisc64"]),
    ("riscv64", &["SCMP_ARCH_RISCV64", "riscv64"]),
    ("loongarch64", &["SCMP_ARCH_LOONGARCH64", "loong64", "loongarch64"]),
    ("m68k", &["SCMP_ARCH_M68K", "m68k"]),
    ("sh", &["SCMP_ARCH_SH", "sh"]),
    ("sheb", &["SCMP_ARCH_SHEB", "sheb"]),
];

/// The one architecture we compile for.
pub(crate) const TARGET: &str = "x86_64";

/// The canonical name of a spelling, or None if no architecture is spelled so.
pub(crate) fn canonical(spelling: &str) -> Option<&'static str> {
    ARCHES
        .iter()
        .find(|(_, spellings)| spellings.iter().any(|s| s.eq_ignore_ascii_case(spelling)))
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn spellings() {
        for s in ["SCMP_ARCH_X86_64", "amd64", "x86_64", "AMD64", "scmp_arch_x86_64"] {
            assert_eq!(canonical(s), Some("x86_64"), "{s}");
        }
        assert_eq!(canonical("x32"), Some("x32"));
        assert_eq!(canonical("386"), Some("x86"));
        assert_eq!(canonical("arm64"), Some("aarch64"));
        assert_eq!(canonical("loong64"), Some("loongarch64"));
        assert_eq!(canonical("amd65"), None);
        assert_eq!(canonical(""), None);
    }
}
