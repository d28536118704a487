//! The run manager: the wiring between the store (what a run is), the
//! spawner (its jail) and the API (who asks). Every change goes to the store
//! first, in one transaction with its audit event; the jail follows:
//!
//! - a run that becomes `active` is spawned (argv, profile and the budget's
//!   kernel limits; stdout and stderr to `<state-dir>/runs/<run_id>/`);
//! - paused -> frozen, back to `active` -> thawed, terminal -> killed;
//! - the spawner's `Exited` -> [`Store::record_exit`], then the session's
//!   next queued run starts.
//!
//! The store is synchronous (rusqlite): every call goes through
//! [`Daemon::db`], on tokio's blocking pool. Waiters (`GET .../wait`) watch
//! one change counter, bumped after every state change. After every store
//! call the audit events appended since the last one are published, in
//! `seq` order, on a broadcast channel (`GET /v1/events`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod agent_side;
mod command_exec;
mod http_exec;

use ccos_jail::{EndReason, Report};
use tokio::sync::{broadcast, watch};

pub use agent_side::{refusal_answer, Executed, AGENT_SOCKET_IN_JAIL};
pub use command_exec::CommandResult;

use crate::api::metrics;
use crate::audit::{types, NewAuditEvent};
use crate::capabilities::Registry;
use crate::lifecycle::RunState;
use crate::model::{
    Actor, AgentSpec, AuditEvent, BudgetPatch, CreateRunRequest, ExitReason, Message, Run, RunDefaults, RunExit, Usage,
};
use crate::spawner::protocol::ErrorKind;
use crate::spawner::{RunLimits, SpawnRequest, Spawned, SpawnerClient, SpawnerError, SpawnerEvent, SpawnerEvents};
use crate::store::{AuditFilter, Ingested, RunFilter, Store, StoreError, Transitioned, MAX_LIMIT};

/// The `state_reason` of runs found live by a restarted supervisor.
pub const SUPERVISOR_RESTARTED: &str = "supervisor_restarted";
/// The `state_reason` of runs cancelled because the supervisor stopped.
pub const SUPERVISOR_SHUTDOWN: &str = "supervisor_shutdown";
/// How long shutdown waits for cancelled jails to report their end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What happens to live runs when the supervisor stops (`--on-shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnShutdown {
    /// Cancel them (state `cancelled`, reason `supervisor_shutdown`) and
    /// kill their jails.
    #[default]
    Cancel,
    /// Leave their jails running until they end; the next supervisor
    /// ends those still running and fails their runs
    /// (`supervisor_restarted`), as it cannot govern them.
    Keep,
}

impl std::str::FromStr for OnShutdown {
    type Err = String;
    fn from_str(s: &str) -> Result<OnShutdown, String> {
        match s {
            "cancel" => Ok(OnShutdown::Cancel),
            "keep" => Ok(OnShutdown::Keep),
            other => Err(format!("--on-shutdown must be `cancel` or `keep`, not {other:?}")),
        }
    }
}

/// What the daemon was started with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub default_agent: String,
    /// Profiles on top of the shipped ones (`--policies`).
    pub policies: Option<PathBuf>,
    /// Skill files on top of the builtin capabilities (`--capabilities`).
    pub capabilities: Option<PathBuf>,
    pub on_shutdown: OnShutdown,
}

/// A failure of the run manager: a store refusal (with its API code), or
/// something the store never saw (the blocking pool went away).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
    /// Profiles or capabilities did not load; the message says which, and
    /// names the file and field.
    #[error("{0}")]
    Policy(String),
}

pub struct Daemon {
    store: Arc<Store>,
    spawner: SpawnerClient,
    state_dir: PathBuf,
    defaults: RunDefaults,
    cgroup_version: u8,
    changes: watch::Sender<u64>,
    /// Every audit event appended, in `seq` order (see [`Daemon::db`]).
    events: broadcast::Sender<AuditEvent>,
    /// The last `seq` sent on `events`.
    published: Arc<std::sync::Mutex<u64>>,
    shutting_down: AtomicBool,
    policies: Option<PathBuf>,
    capabilities_dir: Option<PathBuf>,
    /// The profiles runs may name, with their hashes, as last loaded.
    profiles: std::sync::RwLock<BTreeMap<String, String>>,
    /// What agents may call.
    capabilities: std::sync::RwLock<Arc<Registry>>,
    agents: agent_side::AgentSides,
    /// The default agent's program when it was installed next to the
    /// daemon rather than on the jails' PATH: bound into each jail that
    /// runs it (see [`installed_agent`]).
    agent_program: Option<(String, PathBuf)>,
    /// Secrets for executors; their values never reach a jail.
    secrets: crate::secrets::SecretStore,
}

/// How many events a slow `/v1/events` reader may fall behind before it
/// re-reads them from the store.
const EVENT_BUFFER: usize = 1024;

impl Daemon {
    pub fn new(
        store: Store,
        spawner: SpawnerClient,
        config: &DaemonConfig,
        cgroup_version: u8,
        secrets: crate::secrets::SecretStore,
    ) -> Arc<Daemon> {
        crate::redact::global().set_known(secrets.values());
        let defaults = RunDefaults {
            agent: AgentSpec { argv: vec![config.default_agent.clone()], ..AgentSpec::default() },
            ..RunDefaults::default()
        };
        // Events already stored are not published: readers get them from the store.
        let head = store
            .list_audit(&AuditFilter { limit: 1, ..AuditFilter::default() })
            .ok()
            .and_then(|events| events.first().map(|e| e.seq))
            .unwrap_or(0);
        Arc::new(Daemon {
            store: Arc::new(store),
            spawner,
            state_dir: config.state_dir.clone(),
            defaults,
            cgroup_version,
            changes: watch::channel(0).0,
            events: broadcast::channel(EVENT_BUFFER).0,
            published: Arc::new(std::sync::Mutex::new(head)),
            shutting_down: AtomicBool::new(false),
            policies: config.policies.clone(),
            capabilities_dir: config.capabilities.clone(),
            profiles: std::sync::RwLock::new(BTreeMap::new()),
            capabilities: std::sync::RwLock::new(Arc::new(Registry::builtins())),
            agents: agent_side::AgentSides::default(),
            agent_program: installed_agent(&config.default_agent),
            secrets,
        })
    }

    pub fn cgroup_version(&self) -> u8 {
        self.cgroup_version
    }

    pub fn defaults(&self) -> &RunDefaults {
        &self.defaults
    }

    /// The capabilities agents may call now.
    pub fn capabilities(&self) -> Arc<Registry> {
        self.capabilities.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The profiles runs may name, with their hashes.
    pub fn profiles(&self) -> BTreeMap<String, String> {
        self.profiles.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// (Re)loads the profile set (the shipped profiles and the `--policies`
    /// folder) in the spawner, which compiles them: at start, and on
    /// SIGHUP. Audited as `policy.load` either way; on an error, which
    /// names the file and field, the profiles in use stay.
    pub async fn load_profiles(&self) -> Result<BTreeMap<String, String>, DaemonError> {
        let dir = self.policies.as_ref().map(|d| d.display().to_string());
        let loaded = self.spawner.load_profiles(self.policies.as_deref()).await;
        let event = NewAuditEvent::new(types::POLICY_LOAD, &Actor::System).with("dir", dir);
        let (event, result) = match loaded {
            Ok(profiles) => {
                let set: BTreeMap<String, String> = profiles.into_iter().map(|p| (p.name, p.hash)).collect();
                let listed = serde_json::to_value(&set).unwrap_or_default();
                (event.decision(crate::audit::ALLOW).with("profiles", listed), Ok(set))
            }
            Err(e) => {
                let message = format!("loading profiles: {e}");
                (event.decision(crate::audit::DENY).with("error", message.as_str()), Err(message))
            }
        };
        self.db(move |store| store.append_audit(event)).await?;
        let set = result.map_err(DaemonError::Policy)?;
        *self.profiles.write().unwrap_or_else(|p| p.into_inner()) = set.clone();
        Ok(set)
    }

    /// Runs `f` on the store, on the blocking pool, then publishes the
    /// audit events appended since the last publication (by `f` or anyone).
    pub async fn db<T, F>(&self, f: F) -> Result<T, DaemonError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.db_started(f).await
    }

    /// [`Daemon::db`], under way from this call on rather than from the
    /// first poll of its result.
    fn db_started<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, DaemonError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        let (events, published) = (self.events.clone(), self.published.clone());
        let run = move || {
            let result = f(&store);
            publish(&store, &events, &published);
            result
        };
        let task = tokio::task::spawn_blocking(run);
        async move {
            match task.await {
                Ok(result) => result.map_err(DaemonError::from),
                Err(e) => Err(DaemonError::Internal(format!("store task failed: {e}"))),
            }
        }
    }

    /// A receiver of every audit event appended from now on, in `seq` order.
    pub fn subscribe_events(&self) -> broadcast::Receiver<AuditEvent> {
        self.events.subscribe()
    }

    /// A receiver that sees every state change from now on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn run_dir(&self, run_id: &str) -> PathBuf {
        self.state_dir.join("runs").join(run_id)
    }

    /// The file a run's `stream` (stdout or stderr) is captured in.
    pub fn log_path(&self, run_id: &str, stream: &str) -> PathBuf {
        self.run_dir(run_id).join(stream)
    }

    /// Records `supervisor.start`: the first event of every start.
    pub async fn record_start(&self) -> Result<(), DaemonError> {
        let event =
            NewAuditEvent::new(types::SUPERVISOR_START, &Actor::System).with("version", env!("CARGO_PKG_VERSION"));
        self.db(move |store| store.append_audit(event)).await?;
        Ok(())
    }

    /// Start-up: every run the store says is live lost its jail with the
    /// previous supervisor (this version does not re-adopt jails), so it is
    /// recorded failed; then queued runs of those sessions may start.
    pub async fn reconcile(self: &Arc<Self>) -> Result<Vec<String>, DaemonError> {
        let failed = self
            .db(|store| {
                let mut failed = Vec::new();
                for run in store.live_runs()? {
                    let exit = RunExit { code: None, signal: Some(libc::SIGKILL), reason: ExitReason::Signalled };
                    match store.record_exit(
                        &run.id,
                        &exit,
                        Some((RunState::Failed, SUPERVISOR_RESTARTED)),
                        &Actor::System,
                    ) {
                        Ok(_) | Err(StoreError::ExitAlreadyRecorded { .. }) => {}
                        Err(e) => return Err(e),
                    }
                    failed.push(run.id);
                }
                // Every session with queued runs may start one now: its
                // active run may have ended while no supervisor was there.
                let queued = RunFilter { state: Some(RunState::Queued), limit: MAX_LIMIT, ..RunFilter::default() };
                let sessions: BTreeSet<String> =
                    store.list_runs(&queued)?.into_iter().map(|run| run.session_id).collect();
                Ok((failed, sessions))
            })
            .await?;
        let (failed, sessions) = failed;
        for run_id in &failed {
            // Its agent socket went with the old supervisor.
            let _ = std::fs::remove_file(self.run_dir(run_id).join("agent.sock"));
        }
        for session_id in &sessions {
            self.start_next_queued(session_id).await;
        }
        Ok(failed)
    }

    /// `POST /v1/runs`.
    pub async fn create_run(self: &Arc<Self>, request: CreateRunRequest, actor: Actor) -> Result<Run, DaemonError> {
        let new = request.resolve(&self.defaults).map_err(StoreError::from)?;
        self.check_profile(&new.profile)?;
        // An active run's jail is spawned while the create transaction
        // commits (its fsync is a few hundred microseconds of the request):
        // the store hands the run over once its rows are written, just
        // before COMMIT. Nothing of the run acts on its own before the
        // commit is done: the agent's every call, the run's budget watcher
        // and all start does after the spawn go through the store, which
        // is busy with that commit until then.
        let (written, handed_over) = tokio::sync::oneshot::channel();
        let created = self.db_started(move |store| {
            store.create_run_then(&new, &actor, |run| {
                let _ = written.send(run.clone());
            })
        });
        // No hand-over (the sender dropped): the create failed before it,
        // and its error is the result. A queued run has no jail yet.
        let Some(run) = handed_over.await.ok().filter(|run| run.state == RunState::Active) else {
            let run = created.await?;
            self.changed();
            return Ok(run);
        };
        let spawned = self.spawn_jail(&run).await;
        let run = match created.await {
            Ok(run) => run,
            Err(e) => {
                self.undo_spawn(&run.id, spawned.is_ok()).await;
                return Err(e);
            }
        };
        self.changed();
        Ok(self.settle_start(run, spawned).await)
    }

    /// A run whose create did not commit after its jail was spawned: the
    /// jail, its agent side and its folder go; nothing of it stays.
    async fn undo_spawn(self: &Arc<Self>, run_id: &str, spawned: bool) {
        tracing::error!(run_id = %run_id, "the run's create did not commit: ending the jail spawned for it");
        if spawned {
            if let Err(e) = self.spawner.kill(run_id).await {
                tracing::error!(run_id = %run_id, "killing the jail of a run that does not exist: {e}");
            }
        }
        self.close_agent_side(run_id);
        let dir = self.run_dir(run_id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }

    /// Whether the daemon can do its work: the store answers a query and
    /// the spawner is connected. Fed to systemd's watchdog.
    pub async fn health(&self) -> Result<(), String> {
        self.db(|store| store.schema_version()).await.map_err(|e| format!("the store: {e}"))?;
        if !self.spawner.is_connected() {
            return Err("the spawner is gone".into());
        }
        Ok(())
    }

    /// A secret's value, for an executor's request.
    pub(crate) fn secret_value(&self, name: &str) -> Option<String> {
        self.secrets.get(name).map(|v| v.expose().to_owned())
    }

    /// The secrets' names (never their values).
    pub fn secret_names(&self) -> Vec<String> {
        self.secrets.names()
    }

    /// Stores a secret (from `PUT /v1/secrets/{name}`); from now on its
    /// value is redacted wherever it would appear.
    pub async fn set_secret(self: &Arc<Self>, name: String, value: String, actor: Actor) -> Result<(), DaemonError> {
        self.change_secret(name, Some(value), actor).await.map(drop)
    }

    /// Deletes a secret; false if there was none by that name.
    pub async fn delete_secret(self: &Arc<Self>, name: String, actor: Actor) -> Result<bool, DaemonError> {
        self.change_secret(name, None, actor).await
    }

    /// Stores a secret in the store (no audit: the caller says why), and
    /// tells the redactor its value.
    pub(crate) async fn put_secret(self: &Arc<Self>, name: &str, value: &str) -> Result<(), String> {
        self.write_secret(name.to_owned(), Some(value.to_owned())).await.map(drop)
    }

    async fn change_secret(
        self: &Arc<Self>,
        name: String,
        value: Option<String>,
        actor: Actor,
    ) -> Result<bool, DaemonError> {
        let setting = value.is_some();
        let changed = self
            .write_secret(name.clone(), value)
            .await
            .map_err(|e| DaemonError::Store(crate::model::RequestError::new("name", e).into()))?;
        let event = NewAuditEvent::new(types::SECRET_SET, &actor)
            .with("name", name.as_str())
            .with("action", if setting { "set" } else { "delete" });
        self.db(move |store| store.append_audit(event)).await?;
        Ok(changed)
    }

    /// Sets (`Some`) or deletes (`None`) a secret on the blocking pool, then
    /// gives the redactor the values now stored. False: nothing to delete.
    async fn write_secret(self: &Arc<Self>, name: String, value: Option<String>) -> Result<bool, String> {
        let daemon = self.clone();
        let changed = tokio::task::spawn_blocking(move || match value {
            Some(value) => daemon.secrets.set(&name, &value).map(|()| true),
            None => daemon.secrets.delete(&name),
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        crate::redact::global().set_known(self.secrets.values());
        Ok(changed)
    }

    /// (Re)loads the capabilities: the builtins and the skill files of
    /// `--capabilities`, all or nothing (errors name the file and field).
    /// At start a failure stops the daemon; on SIGHUP the loaded set stays.
    /// Audited as `policy.load` (`kind` capabilities) either way.
    pub async fn load_capabilities(&self) -> Result<Vec<String>, DaemonError> {
        let dir = self.capabilities_dir.clone();
        let secret_names = self.secrets.names();
        let loaded = tokio::task::spawn_blocking(move || match &dir {
            Some(dir) => {
                let names: BTreeSet<String> = secret_names.into_iter().collect();
                crate::capabilities::load_dir(dir, &|name| names.contains(name)).and_then(Registry::with_skills)
            }
            None => Ok(Registry::builtins()),
        })
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))?;
        let dir = self.capabilities_dir.as_ref().map(|d| d.display().to_string());
        let event =
            NewAuditEvent::new(types::POLICY_LOAD, &Actor::System).with("kind", "capabilities").with("dir", dir);
        let (event, result) = match loaded {
            Ok(registry) => {
                let ids: Vec<String> = registry.iter().map(|c| c.id.clone()).collect();
                (event.decision(crate::audit::ALLOW).with("capabilities", ids.clone()), Ok((registry, ids)))
            }
            Err(e) => {
                let message = format!("loading capabilities: {e}");
                (event.decision(crate::audit::DENY).with("error", message.as_str()), Err(message))
            }
        };
        self.db(move |store| store.append_audit(event)).await?;
        let (registry, ids) = result.map_err(DaemonError::Policy)?;
        *self.capabilities.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
        Ok(ids)
    }

    /// A run may name only a loaded profile (checked again by the spawner,
    /// as a reload may come between): a typo is a 400 now, not a failed run.
    fn check_profile(&self, name: &str) -> Result<(), DaemonError> {
        let profiles = self.profiles.read().unwrap_or_else(|p| p.into_inner());
        if profiles.is_empty() || profiles.contains_key(name) {
            return Ok(());
        }
        let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
        let message = format!("no profile {name:?}; loaded: {}", known.join(", "));
        Err(StoreError::from(crate::model::RequestError::new("profile", message)).into())
    }

    /// Spawns an active run's jail. A failure to spawn ends the run
    /// (`failed`, exit reason `spawn_failed`). Returns the run as it is now.
    async fn start(self: &Arc<Self>, run: Run) -> Run {
        let spawned = self.spawn_jail(&run).await;
        self.settle_start(run, spawned).await
    }

    /// The run's folder, agent side and jail; touches nothing in the store.
    async fn spawn_jail(self: &Arc<Self>, run: &Run) -> Result<Spawned, String> {
        use std::os::unix::fs::DirBuilderExt;
        // One folder in the state directory: as quick as the socket bind
        // that follows, and done on this thread like it.
        let dir = self.run_dir(&run.id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let agent_socket = self.open_agent_side(run, &dir).await.map_err(|e| format!("the agent socket: {e}"))?;
        let mut request = spawn_request(run, &dir);
        request.binds.push(agent_socket);
        self.bind_agent_program(&mut request);
        let began = std::time::Instant::now();
        let spawned = self.spawner.spawn(request).await.map_err(|e| e.to_string());
        metrics::observe_spawn(began.elapsed());
        spawned
    }

    /// What follows a spawn, in the store: run.start, or the run's end when
    /// the spawn failed; a run moved meanwhile has its jail follow.
    async fn settle_start(self: &Arc<Self>, run: Run, spawned: Result<Spawned, String>) -> Run {
        let run_id = run.id.clone();
        match spawned {
            Ok(spawned) => {
                if let Some(failure) = &spawned.setup_failure {
                    // Its Exited (reason spawn_failed) follows and ends the run.
                    tracing::warn!(run_id = %run_id, "{failure}");
                } else {
                    let (id, pid, hash) = (run_id.clone(), spawned.pid.as_raw(), spawned.profile_hash.clone());
                    if let Err(e) = self.db(move |store| store.record_start(&id, pid, &hash)).await {
                        tracing::error!(run_id = %run_id, "recording run.start: {e}");
                    }
                }
                // Moved while the spawn was under way (the jail did not exist
                // yet for the transition to act on): make the jail follow.
                let id = run_id.clone();
                if let Ok(now) = self.db(move |store| store.get_run(&id)).await {
                    let followed = if now.state.is_terminal() {
                        // A jail already reaped (an agent that moved its run
                        // to done and exited at once) needs no kill.
                        self.spawner.kill(&run_id).await.or_else(|e| match e {
                            SpawnerError::Refused { kind: ErrorKind::UnknownRun, .. } => Ok(()),
                            e => Err(e),
                        })
                    } else if now.state.is_paused() {
                        self.spawner.freeze(&run_id).await
                    } else {
                        Ok(())
                    };
                    if let Err(e) = followed {
                        tracing::error!(run_id = %run_id, "following `{}` after the spawn: {e}", now.state);
                    }
                    return now;
                }
                run
            }
            Err(message) => {
                tracing::warn!(run_id = %run_id, "spawn failed: {message}");
                self.close_agent_side(&run_id);
                let exit = RunExit { code: None, signal: None, reason: ExitReason::SpawnFailed };
                let reason = format!("spawn_failed: {message}");
                let id = run_id.clone();
                let ended = self
                    .db(move |store| store.record_exit(&id, &exit, Some((RunState::Failed, &reason)), &Actor::System))
                    .await;
                self.changed();
                let session_id = run.session_id.clone();
                let ended = match ended {
                    Ok(run) => run,
                    Err(_) => {
                        let id = run_id.clone();
                        self.db(move |store| store.get_run(&id)).await.unwrap_or(run)
                    }
                };
                self.start_next_queued(&session_id).await;
                ended
            }
        }
    }

    /// Starts the session's oldest queued run if nothing in it is active.
    /// Boxed: starting a run that fails to spawn starts the next one.
    fn start_next_queued<'a>(
        self: &'a Arc<Self>,
        session_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if self.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            let session = session_id.to_owned();
            match self.db(move |store| store.start_next_queued(&session, &Actor::System)).await {
                Ok(Some(run)) => {
                    self.changed();
                    self.start(run).await;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(session_id = %session_id, "starting the next queued run: {e}"),
            }
        })
    }

    /// `POST /v1/runs/{id}/cancel`.
    pub async fn cancel(self: &Arc<Self>, run_id: String, actor: Actor) -> Result<Transitioned, DaemonError> {
        self.transition(run_id, RunState::Cancelled, None, None, actor).await
    }

    /// `POST /v1/runs/{id}/transition` (and cancel): the store decides, then
    /// the jail follows.
    pub async fn transition(
        self: &Arc<Self>,
        run_id: String,
        to: RunState,
        reason: Option<String>,
        budget: Option<BudgetPatch>,
        actor: Actor,
    ) -> Result<Transitioned, DaemonError> {
        let id = run_id.clone();
        let new_budget = budget.is_some();
        let moved = self.db(move |store| store.transition(&id, to, reason.as_deref(), &actor, budget.as_ref())).await?;
        self.changed();
        // The new kernel limits first, so a resumed run runs under them.
        let run = &moved.run;
        if new_budget && moved.previous_state.has_jail() && !run.state.is_terminal() {
            let (memory, pids) = (run.budget.max_memory_bytes, run.budget.max_pids);
            if let Err(e) = self.spawner.set_limits(&run.id, memory, pids).await {
                tracing::error!(run_id = %run.id, "applying the new budget's memory and pids limits: {e}");
            }
        }
        self.follow(&moved).await;
        Ok(moved)
    }

    /// Makes the jail match a state change the store has made.
    /// Boxed: it may start a run, whose agent side may come back here (a
    /// budget decision), and the future's type must not contain itself.
    fn follow<'a>(
        self: &'a Arc<Self>,
        moved: &'a Transitioned,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let (from, run) = (moved.previous_state, &moved.run);
            let id = run.id.as_str();
            let result = match (from, run.state) {
                (RunState::Queued, RunState::Active) => {
                    self.start(run.clone()).await;
                    Ok(())
                }
                (RunState::Active, to) if to.is_paused() => self.spawner.freeze(id).await,
                (f, RunState::Active) if f.is_paused() => self.spawner.thaw(id).await,
                (f, to) if f.has_jail() && to.is_terminal() => self.spawner.kill(id).await,
                _ => Ok(()),
            };
            if let Err(e) = result {
                tracing::error!(run_id = %id, "{from} -> {}: {e}", run.state);
            }
            if from == RunState::Active && run.state != RunState::Active {
                self.start_next_queued(&run.session_id).await;
            }
        })
    }

    /// `POST /v1/sessions/{id}/messages`: a `paused_external_event` run it
    /// resumes is thawed.
    pub async fn ingest_message(
        self: &Arc<Self>,
        session_id: String,
        text: String,
        sender: Option<String>,
        actor: Actor,
    ) -> Result<Ingested, DaemonError> {
        let ingested =
            self.db(move |store| store.ingest_message(&session_id, &text, sender.as_deref(), &actor)).await?;
        // Wakes the run's agent waiting on its inbox, resumed or not.
        self.changed();
        if let (true, Some(run_id)) = (ingested.resumed, &ingested.run_id) {
            if let Err(e) = self.spawner.thaw(run_id).await {
                tracing::error!(run_id = %run_id, "thawing after a message: {e}");
            }
        }
        Ok(ingested)
    }

    pub async fn list_messages(
        &self,
        session_id: String,
        direction: Option<crate::model::Direction>,
    ) -> Result<Vec<Message>, DaemonError> {
        self.db(move |store| store.list_messages(&session_id, direction)).await
    }

    /// Handles the spawner's events until it is gone.
    pub async fn handle_events(self: Arc<Self>, mut events: SpawnerEvents) {
        while let Some(event) = events.recv().await {
            match event {
                // A task each: recording one exit and starting the session's
                // next run must not hold up the exits of other runs.
                SpawnerEvent::Exited { run_id, report } => {
                    if self.agents.deliver_exit(&run_id, &report) {
                        continue;
                    }
                    let daemon = self.clone();
                    tokio::spawn(async move { daemon.on_exit(run_id, &report).await });
                }
                SpawnerEvent::Lost { run_id, message } => {
                    tracing::error!(run_id = %run_id, "the spawner lost its jail: {message}");
                    self.close_agent_side(&run_id);
                    let exit = RunExit { code: None, signal: None, reason: ExitReason::Signalled };
                    let id = run_id.clone();
                    let ended = self
                        .db(move |store| {
                            store.record_exit(&id, &exit, Some((RunState::Failed, "jail_lost")), &Actor::System)
                        })
                        .await;
                    self.changed();
                    if let Ok(run) = ended {
                        self.start_next_queued(&run.session_id).await;
                    }
                }
                SpawnerEvent::Error { run_id, kind, message } => {
                    tracing::error!(run_id = ?run_id, kind = ?kind, "spawner error: {message}");
                }
                SpawnerEvent::Gone(exit) => {
                    if !self.shutting_down.load(Ordering::SeqCst) {
                        tracing::error!("the spawner exited ({exit:?}); no run can start any more");
                    }
                    break;
                }
            }
        }
    }

    async fn on_exit(self: &Arc<Self>, run_id: String, report: &Report) {
        let exit = RunExit {
            code: report.exit_code,
            signal: report.signal,
            reason: match report.reason {
                EndReason::Exited => ExitReason::Exited,
                EndReason::Signalled | EndReason::Killed => ExitReason::Signalled,
                EndReason::TimeLimit => ExitReason::TimeLimit,
                EndReason::Oom => ExitReason::Oom,
                EndReason::PidsLimit => ExitReason::PidsLimit,
                EndReason::SpawnFailed => ExitReason::SpawnFailed,
            },
        };
        let setup_failure = report.error.as_ref().map(|f| format!("spawn_failed: {f}"));
        let (cpu, mem, pids) = (report.cpu_secs, report.memory_peak_bytes, report.pids_peak);
        // The jail's CPU total, as CPU time of the run's current window
        // (read before the agent side and its window base go).
        let id = run_id.clone();
        let window = self.db(move |store| store.get_run(&id)).await.ok().and_then(|r| r.budget_window_started_at);
        let window_cpu = cpu.is_finite().then(|| self.agents.window_cpu(&run_id, window, cpu));
        self.close_agent_side(&run_id);
        let id = run_id.clone();
        let ended = self
            .db(move |store| {
                let before = store.get_run(&id)?;
                // A run ended by a transition (cancel, hard stop) keeps its
                // state; its exit says it was cancelled rather than signalled.
                let exit = match (before.state, exit.reason) {
                    (RunState::Cancelled, ExitReason::Signalled) => RunExit { reason: ExitReason::Cancelled, ..exit },
                    _ => exit,
                };
                let end = setup_failure.as_deref().map(|reason| (RunState::Failed, reason));
                // The last reading, taken with the exit in one commit: wall
                // time to now for a run the exit ends, the jail's CPU and
                // peaks; a run ended before (cancel, hard stop) keeps its
                // wall time.
                let now = crate::model::Timestamp::now();
                store.record_exit_with_usage(&id, &exit, end, &Actor::System, |run| Usage {
                    wall_secs: match (run.state.is_terminal(), run.budget_window_started_at) {
                        (false, Some(start)) => now.saturating_since(start).as_secs_f64(),
                        _ => run.usage.wall_secs,
                    },
                    cpu_secs: window_cpu.map_or(run.usage.cpu_secs, |c| c.max(run.usage.cpu_secs)),
                    memory_peak_bytes: run.usage.memory_peak_bytes.max(mem.unwrap_or(0)),
                    pids_peak: run.usage.pids_peak.max(pids.unwrap_or(0)),
                    ..run.usage
                })
            })
            .await;
        self.changed();
        match ended {
            Ok(run) => self.start_next_queued(&run.session_id).await,
            Err(DaemonError::Store(StoreError::ExitAlreadyRecorded { .. })) => {}
            // A jail spawned for a create that then failed to commit: the
            // run never existed, and undo_spawn has said so already.
            Err(DaemonError::Store(StoreError::RunNotFound { .. })) => {
                tracing::debug!(run_id = %run_id, "the jail of a run that was never committed ended")
            }
            Err(e) => tracing::error!(run_id = %run_id, "recording its exit: {e}"),
        }
    }

    /// Shutdown: cancels every live run, kills its jail, waits (a while) for
    /// the exits to be recorded, and writes `supervisor.stop`.
    pub async fn shutdown(self: &Arc<Self>, on_shutdown: OnShutdown) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let live = self.db(|store| store.live_runs()).await.unwrap_or_default();
        if on_shutdown == OnShutdown::Keep {
            // The runs stay as they are; the spawner keeps their jails until
            // they end, and the next supervisor ends what is left.
            let kept: Vec<String> = live.into_iter().map(|run| run.id).collect();
            let stop = NewAuditEvent::new(types::SUPERVISOR_STOP, &Actor::System)
                .with("on_shutdown", "keep")
                .with("kept", kept);
            let _ = self.db(move |store| store.append_audit(stop)).await;
            self.spawner.close();
            return;
        }
        let mut ids = Vec::new();
        for run in live {
            let id = run.id.clone();
            let moved = self
                .db(move |store| {
                    store.transition(&id, RunState::Cancelled, Some(SUPERVISOR_SHUTDOWN), &Actor::System, None)
                })
                .await;
            if moved.is_ok() {
                if let Err(e) = self.spawner.kill(&run.id).await {
                    tracing::error!(run_id = %run.id, "killing at shutdown: {e}");
                }
                ids.push(run.id);
            }
        }
        self.changed();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !ids.is_empty() && tokio::time::Instant::now() < deadline {
            let pending = ids.clone();
            let still = self
                .db(move |store| {
                    let mut still = Vec::new();
                    for id in pending {
                        if store.get_run(&id)?.exit.is_none() {
                            still.push(id);
                        }
                    }
                    Ok(still)
                })
                .await
                .unwrap_or_default();
            ids = still;
            if !ids.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for id in ids {
            let exit = RunExit { code: None, signal: Some(libc::SIGKILL), reason: ExitReason::Cancelled };
            let _ = self.db(move |store| store.record_exit(&id, &exit, None, &Actor::System)).await;
        }
        let stop = NewAuditEvent::new(types::SUPERVISOR_STOP, &Actor::System).with("on_shutdown", "cancel");
        let _ = self.db(move |store| store.append_audit(stop)).await;
        self.spawner.close();
    }
}

/// Sends the events after the last published `seq` on `events`, in order.
fn publish(store: &Store, events: &broadcast::Sender<AuditEvent>, published: &std::sync::Mutex<u64>) {
    let mut last = published.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let page = match store.audit_after(*last, MAX_LIMIT) {
            Ok(page) => page,
            Err(e) => {
                tracing::error!("publishing audit events: {e}");
                return;
            }
        };
        let full = page.len() == MAX_LIMIT as usize;
        for event in page {
            *last = event.seq;
            // No receiver is fine: nobody is streaming.
            let _ = events.send(event);
        }
        if !full {
            return;
        }
    }
}

/// Where an agent program installed next to the daemon appears in jails.
pub const AGENT_PROGRAM_DIR_IN_JAIL: &str = "/opt/ccos/bin";

/// The default agent's program, when `default_agent` is a bare name (looked
/// up on the jail's PATH) and a file of that name sits next to the daemon's
/// own executable (`target/release/`, or `/usr/libexec/ccos/`): then jails
/// get that file, bound read-only, rather than whatever the host's /usr may
/// or may not have.
fn installed_agent(default_agent: &str) -> Option<(String, PathBuf)> {
    if default_agent.contains('/') {
        return None;
    }
    let beside = std::env::current_exe().ok()?.parent()?.join(default_agent);
    beside.is_file().then(|| (default_agent.to_owned(), beside))
}

impl Daemon {
    /// A run of the default agent by its bare name gets the installed
    /// program, bound at [`AGENT_PROGRAM_DIR_IN_JAIL`].
    fn bind_agent_program(&self, request: &mut SpawnRequest) {
        let Some((name, host_path)) = &self.agent_program else { return };
        if request.argv.first() != Some(name) {
            return;
        }
        let in_jail = Path::new(AGENT_PROGRAM_DIR_IN_JAIL).join(name);
        request.binds.push(crate::spawner::Bind { src: host_path.clone(), dst: in_jail.clone(), read_only: true });
        request.argv[0] = in_jail.display().to_string();
    }
}

fn spawn_request(run: &Run, dir: &Path) -> SpawnRequest {
    let mut request = SpawnRequest::new(run.id.clone(), run.agent.argv.clone());
    request.env = run.agent.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    request.profile = run.profile.clone();
    request.limits = RunLimits {
        memory_bytes: run.budget.max_memory_bytes,
        pids: run.budget.max_pids,
        cpus: None,
        // Not the spawner's wall-time limit: it kills, and runs on while
        // the jail is frozen. The duration budget is the budget watcher's,
        // which applies the run's policy (see daemon/agent_side.rs).
        time_limit_secs: None,
    };
    request.stdout_path = Some(dir.join("stdout"));
    request.stderr_path = Some(dir.join("stderr"));
    request
}
