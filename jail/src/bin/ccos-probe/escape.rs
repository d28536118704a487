//! `ccos-probe escape`: every breakout attempt, one JSON line each.
//!
//! Each check must be safe to run unconfined as root on a real host: the
//! arguments are chosen so that the kernel's permission check comes first
//! and an *allowed* call then fails harmlessly (EINVAL, ENOENT, EFAULT) or
//! only touches things the check creates and removes itself. Each check runs
//! in its own child process (see isolate.rs).

mod files;
mod kernel;
mod namespaces;
mod net;
mod privs;

use crate::isolate;
use crate::outcome::Outcome;
use std::io::Write;

/// What the test harness tells the probe about the world outside the jail.
#[derive(Debug, Default)]
pub struct Options {
    /// A pid that exists on the host; seeing it means the pid namespace leaks.
    pub host_pid: Option<u32>,
    /// A TCP port the harness listens on at the host's 127.0.0.1.
    pub host_port: Option<u16>,
}

type Check = Box<dyn Fn() -> Outcome>;

fn all_checks(opts: &Options) -> Vec<(&'static str, Check)> {
    let mut checks: Vec<(&'static str, Check)> = vec![
        ("caps_effective", Box::new(privs::caps_effective)),
        ("no_new_privs", Box::new(privs::no_new_privs)),
        ("seccomp_mode", Box::new(privs::seccomp_mode)),
        ("setuid_root", Box::new(privs::setuid_root)),
        ("capset_raise", Box::new(privs::capset_raise)),
        ("mount", Box::new(namespaces::mount_tmpfs)),
        ("pivot_root", Box::new(namespaces::pivot_root)),
        ("chroot", Box::new(namespaces::chroot)),
        ("unshare_user", Box::new(namespaces::unshare_user)),
        ("unshare_mount", Box::new(namespaces::unshare_mount)),
        ("unshare_net", Box::new(namespaces::unshare_net)),
        ("clone_newuser", Box::new(namespaces::clone_newuser)),
        ("clone3_newuser", Box::new(namespaces::clone3_newuser)),
        ("setns_pid1", Box::new(namespaces::setns_pid1)),
        ("ptrace", Box::new(kernel::ptrace)),
        ("process_vm_readv", Box::new(kernel::process_vm_readv)),
        ("bpf", Box::new(kernel::bpf)),
        ("perf_event_open", Box::new(kernel::perf_event_open)),
        ("keyctl", Box::new(kernel::keyctl)),
        ("init_module", Box::new(kernel::init_module)),
        ("kexec_load", Box::new(kernel::kexec_load)),
        ("open_by_handle_at", Box::new(kernel::open_by_handle_at)),
        ("userfaultfd", Box::new(kernel::userfaultfd)),
        ("io_uring_setup", Box::new(kernel::io_uring_setup)),
        ("tiocsti", Box::new(kernel::tiocsti)),
        ("tiocsti_stdin", Box::new(kernel::tiocsti_stdin)),
        ("mknod_device", Box::new(files::mknod_device)),
        ("write_root", Box::new(|| files::write_in("/"))),
        ("write_usr", Box::new(|| files::write_in("/usr"))),
        ("write_etc", Box::new(|| files::write_in("/etc"))),
        ("write_proc_sys", Box::new(files::write_proc_sys)),
        ("write_sys", Box::new(files::write_sys)),
        ("read_shadow", Box::new(files::read_shadow)),
    ];
    if let Some(pid) = opts.host_pid {
        checks.push(("host_pid_visible", Box::new(move || files::host_pid_visible(pid))));
    }
    checks.extend([
        ("proc_pid_count", Box::new(files::proc_pid_count) as Check),
        ("host_devices", Box::new(files::host_devices)),
        ("dev_mem", Box::new(files::dev_mem)),
        ("udp_route", Box::new(net::udp_route)),
    ]);
    if let Some(port) = opts.host_port {
        checks.push(("tcp_loopback_host", Box::new(move || net::tcp_loopback_host(port))));
    }
    checks.extend([
        ("raw_socket", Box::new(net::raw_socket) as Check),
        ("packet_socket", Box::new(net::packet_socket)),
        ("netlink_socket", Box::new(net::netlink_socket)),
    ]);
    checks
}

/// Run every check and print one JSON object per line.
pub fn run(opts: &Options) {
    for (name, check) in all_checks(opts) {
        let report = isolate::run(name, check.as_ref());
        let line = serde_json::to_string(&report).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
