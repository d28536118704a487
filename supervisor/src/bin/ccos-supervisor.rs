//! `ccos-supervisor`: the daemon. Forks the spawner while still
//! single-threaded, then starts tokio, opens the store, reconciles runs left
//! live by a previous instance, binds the admin socket and serves until
//! SIGTERM or SIGINT, when it stops accepting, cancels the live runs and
//! exits 0.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ccos_supervisor::api::{self, ADMIN_GROUP};
use ccos_supervisor::daemon::{Daemon, DaemonConfig};
use ccos_supervisor::spawner::{Spawner, SpawnerConfig, SpawnerHandle};
use ccos_supervisor::store::Store;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: ccos-supervisor [--socket PATH] [--state-dir DIR] [--default-agent ARGV0]

  --socket PATH          the admin socket (CCOS_SOCKET; default /run/ccos/ccos.sock)
  --state-dir DIR        the state directory (CCOS_STATE_DIR; default /var/lib/ccos)
  --default-agent ARGV0  the agent of runs that name none (CCOS_DEFAULT_AGENT; default ccos-agent)";

fn parse_args() -> Result<DaemonConfig, String> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let mut config = DaemonConfig {
        socket: env("CCOS_SOCKET", "/run/ccos/ccos.sock").into(),
        state_dir: env("CCOS_STATE_DIR", "/var/lib/ccos").into(),
        default_agent: env("CCOS_DEFAULT_AGENT", "ccos-agent"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--socket" => config.socket = PathBuf::from(value()?),
            "--state-dir" => config.state_dir = PathBuf::from(value()?),
            "--default-agent" => config.default_agent = value()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("ccos-supervisor {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if config.default_agent.is_empty() {
        return Err("--default-agent must not be empty".into());
    }
    Ok(config)
}

fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ccos-supervisor: {e}");
            return ExitCode::from(2);
        }
    };
    // First, while this process has one thread.
    let spawner = match Spawner::fork_before_runtime(SpawnerConfig::default()) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("ccos-supervisor: starting the spawner: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ccos-supervisor: building the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, spawner)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccos-supervisor: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: DaemonConfig, spawner: SpawnerHandle) -> Result<(), String> {
    let cgroup_version = spawner.cgroup_mode().version();
    let (client, events) = spawner.connect().map_err(|e| format!("connecting to the spawner: {e}"))?;
    let state_dir = config.state_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&state_dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("opening the store: {e}"))?;
    let daemon = Daemon::new(store, client, &config, cgroup_version);
    let events_task = tokio::spawn(daemon.clone().handle_events(events));
    let failed = daemon.reconcile().await.map_err(|e| format!("reconciling runs: {e}"))?;
    for run_id in &failed {
        eprintln!(
            "ccos-supervisor: run {run_id} was live when the supervisor stopped: now failed (supervisor_restarted)"
        );
    }

    let listener = bind(&config.socket)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
    };
    eprintln!("ccos-supervisor: serving on {} (cgroup v{cgroup_version})", config.socket.display());
    api::serve(listener, daemon.clone(), shutdown).await;

    eprintln!("ccos-supervisor: stopping: cancelling live runs");
    let _ = std::fs::remove_file(&config.socket);
    daemon.shutdown().await;
    drop(daemon);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), events_task).await;
    Ok(())
}

/// Binds the admin socket: a stale socket file is removed (a live one, that
/// another daemon answers on, is refused), mode 0660, group `ccos` if it
/// exists.
fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!("{} is in use: another ccos-supervisor serves on it", path.display()));
            }
            std::fs::remove_file(path).map_err(|e| format!("removing the stale socket {}: {e}", path.display()))?;
        }
        Ok(_) => return Err(format!("{} exists and is not a socket; refusing to replace it", path.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("binding {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("chmod 0660 {}: {e}", path.display()))?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name(ADMIN_GROUP) {
        nix::unistd::chown(path, None, Some(group.gid))
            .map_err(|e| format!("chgrp {ADMIN_GROUP} {}: {e}", path.display()))?;
    }
    Ok(listener)
}
