//! Capability names, to check `includes.caps` / `excludes.caps`. The jail
//! holds no capability, so the names never change what a rule does, but a
//! misspelled name is still a mistake worth reporting.

/// Every capability of linux/capability.h up to CAP_CHECKPOINT_RESTORE (40).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Whether `name` is a capability. Docker and runc spell them upper case
/// with the CAP_ prefix; nothing else is accepted.
pub(crate) fn is_known(name: &str) -> bool {
    CAPABILITIES.contains(&name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known() {
        assert_eq!(super::CAPABILITIES.len(), 41);
        assert!(super::is_known("CAP_SYS_ADMIN"));
        assert!(!super::is_known("CAP_SYS_ADMN"));
        assert!(!super::is_known("sys_admin"));
    }
}
