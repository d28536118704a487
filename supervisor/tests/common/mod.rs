//! What the daemon's end-to-end tests share: one real `ccos-supervisor` at a
//! time on a temporary socket and state directory, stopped (with its
//! spawner and jails) when the test is done.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One daemon (and its spawner and jails) at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root (it runs the daemon, which makes jails), and CI=true");
    }
    eprintln!("{test}: SKIPPED (needs root)");
    false
}

/// A running `ccos-supervisor`.
pub struct DaemonProcess {
    child: Option<Child>,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
}

impl DaemonProcess {
    /// Starts the daemon in `dir`; returns once `ready(socket)` says it
    /// serves (or panics with its log if it exits or takes over 20 s).
    pub fn start(dir: &Path, ready: impl Fn(&Path) -> bool) -> DaemonProcess {
        Self::start_with(dir, |_| {}, ready)
    }

    /// [`DaemonProcess::start`], with `configure` adding arguments or
    /// environment to the daemon's command.
    pub fn start_with(
        dir: &Path,
        configure: impl FnOnce(&mut Command),
        ready: impl Fn(&Path) -> bool,
    ) -> DaemonProcess {
        let mut command = Self::command(dir);
        configure(&mut command);
        Self::spawn(command, dir, ready)
    }

    /// The daemon's command line for `dir`: its socket, state directory and
    /// log there, and none of the `CCOS_*` variables of the caller.
    pub fn command(dir: &Path) -> Command {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("daemon.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ccos-supervisor"));
        command.arg("--socket").arg(dir.join("ccos.sock")).arg("--state-dir").arg(dir.join("state"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CCOS_") {
                command.env_remove(name);
            }
        }
        command.stdin(Stdio::null()).stdout(log_file.try_clone().unwrap()).stderr(log_file);
        command
    }

    /// Starts `command` (from [`DaemonProcess::command`], possibly wrapped)
    /// and waits until `ready`.
    pub fn spawn(mut command: Command, dir: &Path, ready: impl Fn(&Path) -> bool) -> DaemonProcess {
        let (socket, state, log) = (dir.join("ccos.sock"), dir.join("state"), dir.join("daemon.log"));
        let child = command.spawn().expect("starting ccos-supervisor");
        let mut d = DaemonProcess { child: Some(child), socket, state, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if d.socket.exists() && ready(&d.socket) {
                return d;
            }
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the daemon exited ({status}) before serving; log:\n{}", d.log_text());
            }
            assert!(Instant::now() < deadline, "the daemon did not answer within 20 s; log:\n{}", d.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the daemon to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon did not exit within {within:?}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and SIGKILL if it has not exited within 15 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DaemonProcess {
    /// Stops the daemon, then waits for its spawner and jails (forked from
    /// it, so their command line names the same socket) to be gone, so
    /// nothing of this test is left to disturb the next one.
    fn drop(&mut self) {
        self.stop();
        let socket = self.socket.to_string_lossy().into_owned();
        eventually(Duration::from_secs(15), || processes_marked(&socket).is_empty());
    }
}

/// Pids (other than this process) whose command line contains `marker`.
pub fn processes_marked(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| pid != me)
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `cond` every 20 ms for up to `within`.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
