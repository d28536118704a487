//! `ccos-supervisor`: the daemon. Forks the spawner while still
//! single-threaded, then starts tokio, opens the store, loads the
//! profiles, reconciles runs left live by a previous instance, serves the
//! admin API on its socket (its own, or the one systemd passed) and tells
//! systemd it is ready. SIGHUP reloads the profiles; SIGTERM or SIGINT stop
//! accepting, cancel or keep the live runs (`--on-shutdown`) and exit 0.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ccos_supervisor::api::{self, ADMIN_GROUP};
use ccos_supervisor::daemon::{Daemon, DaemonConfig, OnShutdown};
use ccos_supervisor::once::{self, Once};
use ccos_supervisor::spawner::{Spawner, SpawnerConfig, SpawnerHandle};
use ccos_supervisor::store::Store;
use ccos_supervisor::systemd::{self, Notifier};
use ccos_supervisor::{kept_spawner, logging};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: ccos-supervisor [--socket PATH] [--state-dir DIR] [--policies DIR] [--default-agent ARGV0]
                       [--on-shutdown cancel|keep] [--once GOAL [-- AGENT ARGV...]]

  --socket PATH          the admin socket (CCOS_SOCKET; default /run/ccos/ccos.sock), unless
                         systemd passes one (socket activation)
  --state-dir DIR        the state directory (CCOS_STATE_DIR; default /var/lib/ccos)
  --policies DIR         jail profiles (*.toml, named by file stem) on top of the shipped
                         default and strict (CCOS_POLICIES; default none); SIGHUP reloads them
  --capabilities DIR     skill files (*.toml, policies/skills/README.md) on top of the builtin
                         capabilities (CCOS_CAPABILITIES; default none); SIGHUP reloads them
  --default-agent ARGV0  the agent of runs that name none (CCOS_DEFAULT_AGENT; default ccos-agent)
  --on-shutdown WHAT     on SIGTERM, `cancel` live runs (default) or `keep` their jails running
                         until they end (CCOS_ON_SHUTDOWN)
  --once GOAL            run one agent for GOAL (the default agent, or the argv after --), print
                         what it did and exit: 0 if the run is done. Uses a temporary socket and
                         state directory unless --socket / --state-dir say otherwise

  CCOS_LOG filters the log (default info); every line is redacted. CREDENTIALS_DIRECTORY
  (systemd credentials) adds read-only secrets to <state-dir>/secrets.json.";

/// The daemon's configuration and what only main needs.
struct Args {
    daemon: DaemonConfig,
    once: Option<Once>,
    /// A temporary directory made for `--once`, removed at the end.
    scratch: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let mut config = DaemonConfig {
        socket: env("CCOS_SOCKET", "/run/ccos/ccos.sock").into(),
        state_dir: env("CCOS_STATE_DIR", "/var/lib/ccos").into(),
        default_agent: env("CCOS_DEFAULT_AGENT", "ccos-agent"),
        policies: std::env::var_os("CCOS_POLICIES").filter(|v| !v.is_empty()).map(PathBuf::from),
        capabilities: std::env::var_os("CCOS_CAPABILITIES").filter(|v| !v.is_empty()).map(PathBuf::from),
        on_shutdown: env("CCOS_ON_SHUTDOWN", "cancel").parse().map_err(|e| format!("CCOS_ON_SHUTDOWN: {e}"))?,
    };
    let mut once: Option<Once> = None;
    let (mut socket_given, mut state_given) =
        (std::env::var_os("CCOS_SOCKET").is_some(), std::env::var_os("CCOS_STATE_DIR").is_some());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            let argv: Vec<String> = args.by_ref().collect();
            match once.as_mut() {
                Some(once) if !argv.is_empty() => once.argv = Some(argv),
                _ => return Err("an agent argv after `--` goes with --once GOAL".into()),
            }
            break;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--socket" => {
                config.socket = PathBuf::from(value()?);
                socket_given = true;
            }
            "--state-dir" => {
                config.state_dir = PathBuf::from(value()?);
                state_given = true;
            }
            "--once" => once = Some(Once { goal: value()?, argv: None }),
            "--default-agent" => config.default_agent = value()?,
            "--policies" => config.policies = Some(PathBuf::from(value()?)),
            "--capabilities" => config.capabilities = Some(PathBuf::from(value()?)),
            "--on-shutdown" => config.on_shutdown = value()?.parse()?,
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
    // One run on a fresh machine must not need (or touch) /var/lib/ccos.
    let mut scratch = None;
    if once.is_some() && !(socket_given && state_given) {
        let dir = std::env::temp_dir().join(format!("ccos-once-{}", std::process::id()));
        if !socket_given {
            config.socket = dir.join("ccos.sock");
        }
        if !state_given {
            config.state_dir = dir.join("state");
        }
        scratch = Some(dir);
    }
    Ok(Args { daemon: config, once, scratch })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("ccos-supervisor: {e}");
            return ExitCode::from(2);
        }
    };
    let scratch = args.scratch.clone();
    let code = match start(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    };
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    code
}

/// Everything that must happen while the process has one thread, then the
/// runtime. Ok(false): the `--once` run did not end `done`.
fn start(args: Args) -> Result<bool, String> {
    let config = args.daemon;
    // A --once run prints its own summary; the log says only what went wrong.
    let log_target = logging::init(if args.once.is_some() { "warn" } else { "info" });
    // Both change or read process-wide state: before any thread.
    let activated = systemd::take_listener()?;
    let notifier = Notifier::from_env()?;
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| format!("creating the state directory {}: {e}", config.state_dir.display()))?;
    if let Some(pid) = kept_spawner::stop_previous(&config.state_dir)? {
        tracing::info!("ended the jails a previous supervisor kept (its spawner, pid {pid})");
    }
    let spawner_config = SpawnerConfig { keep_on_exit: config.on_shutdown == OnShutdown::Keep, ..Default::default() };
    let spawner = Spawner::fork_before_runtime(spawner_config).map_err(|e| format!("starting the spawner: {e}"))?;
    kept_spawner::record(&config.state_dir, spawner.pid())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building the async runtime: {e}"))?;
    tracing::debug!(?log_target, "logging");
    runtime.block_on(run(config, spawner, activated, notifier, args.once))
}

async fn run(
    config: DaemonConfig,
    spawner: SpawnerHandle,
    activated: Option<std::os::unix::net::UnixListener>,
    notifier: Option<Notifier>,
    once: Option<Once>,
) -> Result<bool, String> {
    let cgroup_version = spawner.cgroup_mode().version();
    let (client, events) = spawner.connect().map_err(|e| format!("connecting to the spawner: {e}"))?;
    let state_dir = config.state_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&state_dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("opening the store: {e}"))?;
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let secrets = ccos_supervisor::secrets::SecretStore::open(&config.state_dir, credentials.as_deref())
        .map_err(|e| format!("opening the secret store: {e}"))?;
    let daemon = Daemon::new(store, client, &config, cgroup_version, secrets);
    let events_task = tokio::spawn(daemon.clone().handle_events(events));
    daemon.record_start().await.map_err(|e| format!("recording the start: {e}"))?;
    // A broken policies folder stops the start: runs would fail one by one.
    let profiles = daemon.load_profiles().await.map_err(|e| e.to_string())?;
    tracing::info!("profiles: {}", profiles.keys().cloned().collect::<Vec<_>>().join(", "));
    // Likewise for the capabilities.
    let capabilities = daemon.load_capabilities().await.map_err(|e| e.to_string())?;
    tracing::info!("capabilities: {}", capabilities.join(", "));
    let failed = daemon.reconcile().await.map_err(|e| format!("reconciling runs: {e}"))?;
    for run_id in &failed {
        tracing::warn!(run_id = %run_id, "was live when the supervisor stopped: now failed (supervisor_restarted)");
    }

    let (listener, bound) = match activated {
        Some(listener) => {
            listener.set_nonblocking(true).map_err(|e| format!("the socket systemd passed: {e}"))?;
            let listener = UnixListener::from_std(listener).map_err(|e| format!("the socket systemd passed: {e}"))?;
            (listener, None)
        }
        None => (bind(&config.socket)?, Some(config.socket.clone())),
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP handler: {e}"))?;
    let notifier = notifier.map(Arc::new);
    // `--once`: its run, and the daemon stops when it is over.
    let (once_done, mut once_finished) = tokio::sync::oneshot::channel::<Result<bool, String>>();
    let once_task = once.map(|once| {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let _ = once_done.send(once::run_once(&daemon, &once).await);
        })
    });
    let once_result = Arc::new(std::sync::Mutex::new(None));
    let shutdown = {
        let (daemon, notifier, once_result) = (daemon.clone(), notifier.clone(), once_result.clone());
        let once_running = once_task.is_some();
        async move {
            loop {
                tokio::select! {
                    _ = sigterm.recv() => break,
                    _ = sigint.recv() => break,
                    _ = sighup.recv() => reload(&daemon, notifier.as_deref()).await,
                    finished = &mut once_finished, if once_running => {
                        *once_result.lock().unwrap_or_else(|p| p.into_inner()) = finished.ok();
                        break;
                    }
                }
            }
        }
    };
    let watchdog = match (notifier.clone(), systemd::watchdog_interval()) {
        (Some(notifier), Some(every)) => Some(tokio::spawn(watchdog(daemon.clone(), notifier, every))),
        _ => None,
    };
    match &bound {
        Some(path) => tracing::info!("serving on {} (cgroup v{cgroup_version})", path.display()),
        None => tracing::info!("serving on the socket systemd passed (cgroup v{cgroup_version})"),
    }
    notify(notifier.as_deref(), "READY=1\nSTATUS=serving");
    api::serve(listener, daemon.clone(), shutdown).await;

    notify(notifier.as_deref(), "STOPPING=1");
    if let Some(task) = watchdog {
        task.abort();
    }
    match config.on_shutdown {
        OnShutdown::Cancel => tracing::info!("stopping: cancelling live runs"),
        OnShutdown::Keep => tracing::info!("stopping: live runs keep running (--on-shutdown keep)"),
    }
    // systemd owns the socket it passed (and keeps it for the next start).
    if let Some(path) = bound {
        let _ = std::fs::remove_file(path);
    }
    daemon.shutdown(config.on_shutdown).await;
    drop(daemon);
    let _ = tokio::time::timeout(Duration::from_secs(5), events_task).await;
    let once_result = once_result.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (once_task, once_result) {
        (None, _) => Ok(true),
        (Some(_), Some(result)) => result,
        (Some(_), None) => Err("stopped before the --once run ended".into()),
    }
}

/// SIGHUP: reloads the profiles and the capabilities; a broken set is
/// refused, and the one in use stays.
async fn reload(daemon: &Arc<Daemon>, notifier: Option<&Notifier>) {
    notify(notifier, "RELOADING=1");
    match daemon.load_profiles().await {
        Ok(profiles) => {
            tracing::info!("reloaded profiles: {}", profiles.keys().cloned().collect::<Vec<_>>().join(", "))
        }
        Err(e) => tracing::error!("SIGHUP: {e}; the profiles in use stay"),
    }
    match daemon.load_capabilities().await {
        Ok(ids) => tracing::info!("reloaded capabilities: {}", ids.join(", ")),
        Err(e) => tracing::error!("SIGHUP: {e}; the capabilities in use stay"),
    }
    notify(notifier, "READY=1");
}

/// WATCHDOG=1 every `every` while the daemon is healthy: its store answers
/// and its spawner is there. A stuck or broken daemon stops sending, and
/// systemd restarts it.
async fn watchdog(daemon: Arc<Daemon>, notifier: Arc<Notifier>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        match tokio::time::timeout(every, daemon.health()).await {
            Ok(Ok(())) => notify(Some(&notifier), "WATCHDOG=1"),
            Ok(Err(why)) => tracing::error!("unhealthy, not feeding the watchdog: {why}"),
            Err(_) => tracing::error!("the health check took over {every:?}, not feeding the watchdog"),
        }
    }
}

fn notify(notifier: Option<&Notifier>, state: &str) {
    if let Some(notifier) = notifier {
        if let Err(e) = notifier.notify(state) {
            tracing::warn!("sd_notify({}): {e}", state.replace('\n', " "));
        }
    }
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
