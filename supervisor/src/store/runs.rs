//! Runs: creation (with the one-active-run rule and the kickoff message),
//! reads, and every state change, each through [`move_run`], which asks
//! `lifecycle` and writes the change and its audit event together.

use std::str::FromStr;

use rusqlite::{OptionalExtension, Row, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::SqlContext;
use super::{audit, check_limit, ensure_session, messages, new_id, Result, Store, StoreError, DEFAULT_LIMIT};
use crate::audit::{types, NewAuditEvent};
use crate::lifecycle::{check_transition, exit_outcome, RunState};
use crate::model::{
    validate_session_id, Actor, BudgetPatch, Direction, Message, NewRun, RequestError, Run, RunExit, Timestamp, Usage,
    MESSAGE_PREFIX, RUN_PREFIX,
};

/// `GET /v1/runs?session_id=&state=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFilter {
    pub session_id: Option<String>,
    pub state: Option<RunState>,
    /// 1..=2000.
    pub limit: u32,
}

impl Default for RunFilter {
    fn default() -> Self {
        RunFilter { session_id: None, state: None, limit: DEFAULT_LIMIT }
    }
}

/// A state change that happened: the answer `{run_id, previous_state, state}`
/// is `run.id`, `previous_state`, `run.state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transitioned {
    pub previous_state: RunState,
    pub run: Run,
}

/// The columns of `runs`, in the order every query selects them.
const RUN_COLUMN_NAMES: [&str; 21] = [
    "id",
    "session_id",
    "goal",
    "state",
    "state_reason",
    "agent",
    "profile",
    "profile_hash",
    "budget",
    "budget_policy",
    "usage",
    "budget_window_started_at",
    "completion_predicate",
    "current_step_id",
    "exit",
    "created_at",
    "updated_at",
    "started_at",
    "ended_at",
    "metadata",
    "capabilities",
];

fn run_columns() -> String {
    RUN_COLUMN_NAMES.join(", ")
}

/// The text of the message every run finds first in its inbox (API.md).
pub fn kickoff_text(run_id: &str, goal: &str) -> String {
    format!("Run started ({run_id}). Goal:\n{goal}")
}

impl Store {
    /// Creates a run: `active` if its session has no active run; else
    /// `queued` if `new.queue`, else [`StoreError::ActiveRunExists`] naming
    /// the active run. A queued request also queues behind runs already
    /// queued, so a session's queue is first come, first served. Writes the
    /// kickoff message to the run's inbox and `run.create`.
    pub fn create_run(&self, new: &NewRun, actor: &Actor) -> Result<Run> {
        self.create_run_then(new, actor, |_| {})
    }

    /// [`Store::create_run`], handing the run to `written` once its rows are
    /// written, just before COMMIT: a caller can start work that needs only
    /// the run (its jail) while the commit waits for the disk. Not called
    /// when the create fails before (a 409, a bad session id); the COMMIT
    /// can still fail after it, which the result says.
    pub fn create_run_then(&self, new: &NewRun, actor: &Actor, written: impl FnOnce(&Run)) -> Result<Run> {
        validate_session_id(&new.session_id)?;
        let run_id = new_id(RUN_PREFIX)?;
        let kickoff_id = new_id(MESSAGE_PREFIX)?;
        let now = Timestamp::now();
        self.write(|tx| {
            ensure_session(tx, &new.session_id, &now.to_string())?;
            let state = match active_run_id(tx, &new.session_id)? {
                Some(active) if !new.queue => {
                    return Err(StoreError::ActiveRunExists { session_id: new.session_id.clone(), run_id: active })
                }
                Some(_) => RunState::Queued,
                None if new.queue && oldest_queued(tx, &new.session_id)?.is_some() => RunState::Queued,
                None => RunState::Active,
            };
            let started = (state == RunState::Active).then_some(now);
            let run = Run {
                id: run_id,
                session_id: new.session_id.clone(),
                goal: new.goal.clone(),
                state,
                state_reason: None,
                agent: new.agent.clone(),
                profile: new.profile.clone(),
                profile_hash: new.profile_hash.clone(),
                budget: new.budget,
                budget_policy: new.budget_policy,
                usage: Usage::default(),
                budget_window_started_at: started,
                completion_predicate: new.completion_predicate.clone(),
                current_step_id: None,
                exit: None,
                created_at: now,
                updated_at: now,
                started_at: started,
                ended_at: None,
                metadata: new.metadata.clone(),
                capabilities: new.capabilities.clone(),
            };
            insert_run(tx, &run)?;
            messages::insert(
                tx,
                &run.session_id,
                &Message {
                    id: kickoff_id.clone(),
                    direction: Direction::In,
                    sender: messages::SYSTEM_SENDER.to_owned(),
                    text: kickoff_text(&run.id, &run.goal),
                    run_id: Some(run.id.clone()),
                    at: now,
                },
            )?;
            // The agent's argv and env are left out: env is where tokens go.
            let event = NewAuditEvent::new(types::RUN_CREATE, actor)
                .run(&run.session_id, &run.id)
                .with("state", run.state.as_str())
                .with("profile", run.profile.as_str())
                .with("budget", to_value(&run.budget)?)
                .with("budget_policy", run.budget_policy.as_str())
                .with("completion_predicate", run.completion_predicate.to_string())
                .with("queue", new.queue)
                .with("kickoff_message_id", kickoff_id);
            audit::append(tx, event, now)?;
            written(&run);
            Ok(run)
        })
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        self.read(|tx| load_run(tx, run_id))
    }

    /// Runs, most recently created first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let limit = check_limit(filter.limit)?;
        let cols = run_columns();
        let sql = format!(
            "SELECT {cols} FROM runs WHERE (?1 IS NULL OR session_id = ?1) AND (?2 IS NULL OR state = ?2) \
             ORDER BY created_at DESC, rowid DESC LIMIT ?3"
        );
        let state = filter.state.map(RunState::as_str);
        self.read(|tx| query_runs(tx, &sql, (&filter.session_id, state, limit)))
    }

    /// Runs that may still have a jail (active or paused), oldest first:
    /// what a restarted supervisor reconciles against the cgroups it finds.
    pub fn live_runs(&self) -> Result<Vec<Run>> {
        let cols = run_columns();
        let sql = format!(
            "SELECT {cols} FROM runs WHERE state IN ('active', 'paused_approval', 'paused_external_event') \
             ORDER BY created_at, rowid"
        );
        self.read(|tx| query_runs(tx, &sql, ()))
    }

    /// How many runs are in each state (states with none are absent).
    pub fn count_runs_by_state(&self) -> Result<Vec<(String, u64)>> {
        self.read(|tx| {
            let mut st = tx.prepare_cached("SELECT state, COUNT(*) FROM runs GROUP BY state").ctx("counting runs")?;
            let rows = st
                .query_map((), |r| Ok((r.get::<_, String>(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0))))
                .ctx("counting runs")?;
            rows.map(|r| r.ctx("counting runs")).collect()
        })
    }

    /// Moves a run to `to` as `actor` asks (the admin or agent transition,
    /// cancel, a budget decision). Refuses what the lifecycle table refuses,
    /// `done` where the completion predicate refuses it, and `active` while
    /// another run of the session is active. An explicit move to `active`
    /// opens a fresh budget window. `budget`, if given, is merged over the
    /// run's current limits (absent fields keep theirs; `null` = unlimited).
    /// Writes `run.cancel` for a move to `cancelled`, else `run.transition`.
    pub fn transition(
        &self,
        run_id: &str,
        to: RunState,
        reason: Option<&str>,
        actor: &Actor,
        budget: Option<&BudgetPatch>,
    ) -> Result<Transitioned> {
        let now = Timestamp::now();
        self.write(|tx| {
            let mut run = load_run(tx, run_id)?;
            let change = Move { to, reason, fresh_window: true, budget };
            let previous_state = move_run(tx, &mut run, &change, actor, now)?;
            Ok(Transitioned { previous_state, run })
        })
    }

    /// The run to start now that the session may be free: its oldest queued
    /// run, or `None` if it has none or still has an active run. Starting it
    /// is [`Store::transition`] to `active`, which checks again; or use
    /// [`Store::start_next_queued`] to do both at once.
    pub fn next_queued_run(&self, session_id: &str) -> Result<Option<Run>> {
        self.read(|tx| {
            if active_run_id(tx, session_id)?.is_some() {
                return Ok(None);
            }
            oldest_queued(tx, session_id)?.map(|id| load_run(tx, &id)).transpose()
        })
    }

    /// [`Store::next_queued_run`] and its move to `active` (fresh budget
    /// window, `run.transition`) in one transaction.
    pub fn start_next_queued(&self, session_id: &str, actor: &Actor) -> Result<Option<Run>> {
        let now = Timestamp::now();
        self.write(|tx| {
            if active_run_id(tx, session_id)?.is_some() {
                return Ok(None);
            }
            let Some(id) = oldest_queued(tx, session_id)? else { return Ok(None) };
            let mut run = load_run(tx, &id)?;
            let change = Move { to: RunState::Active, reason: None, fresh_window: true, budget: None };
            move_run(tx, &mut run, &change, actor, now)?;
            Ok(Some(run))
        })
    }

    /// Records how the run's jail ended (`run.exit`). If the run is not yet
    /// terminal it is ended too: in `end` (state, reason) if given, which
    /// must be terminal; else as `lifecycle::exit_outcome` decides from the
    /// exit, judging `done` by the agent's rule of the completion predicate
    /// (an exit is the agent finishing). A run already ended by a transition
    /// (cancel, hard stop) keeps its state and gains its exit.
    pub fn record_exit(
        &self,
        run_id: &str,
        exit: &RunExit,
        end: Option<(RunState, &str)>,
        actor: &Actor,
    ) -> Result<Run> {
        self.record_exit_with_usage(run_id, exit, end, actor, |run| run.usage)
    }

    /// [`Store::record_exit`], with the run's final usage (the jail's own
    /// report: `usage` sees the run as stored) in the same transaction: one
    /// commit, one fsync, per ended run.
    pub fn record_exit_with_usage(
        &self,
        run_id: &str,
        exit: &RunExit,
        end: Option<(RunState, &str)>,
        actor: &Actor,
        usage: impl FnOnce(&Run) -> Usage,
    ) -> Result<Run> {
        if let Some((state, _)) = end {
            if !state.is_terminal() {
                let msg = format!("a run whose jail ended must end too; `{state}` is not terminal");
                return Err(RequestError::new("state", msg).into());
            }
        }
        let now = Timestamp::now();
        self.write(|tx| {
            let mut run = load_run(tx, run_id)?;
            if run.exit.is_some() {
                return Err(StoreError::ExitAlreadyRecorded { run_id: run.id });
            }
            let final_usage = usage(&run);
            if final_usage.wall_secs.is_finite() && final_usage.cpu_secs.is_finite() {
                run.usage = final_usage;
            }
            if !run.state.is_terminal() {
                let (to, reason) = match end {
                    Some((state, reason)) => (state, reason.to_owned()),
                    None => {
                        let as_agent = Actor::Agent { run_id: run.id.clone() };
                        let done_allowed = match predicate_allows_done(tx, &run, &as_agent) {
                            Ok(()) => true,
                            Err(StoreError::PredicateUnsatisfied(_)) => false,
                            Err(other) => return Err(other),
                        };
                        exit_outcome(run.state, exit, done_allowed)
                    }
                };
                let change = Move { to, reason: Some(&reason), fresh_window: false, budget: None };
                move_run(tx, &mut run, &change, actor, now)?;
            }
            run.exit = Some(*exit);
            run.ended_at.get_or_insert(now);
            run.updated_at = now;
            save_run(tx, &run)?;
            let event = NewAuditEvent::new(types::RUN_EXIT, actor)
                .run(&run.session_id, &run.id)
                .with("code", exit.code)
                .with("signal", exit.signal)
                .with("reason", exit.reason.as_str())
                .with("state", run.state.as_str());
            audit::append(tx, event, now)?;
            Ok(run)
        })
    }

    /// Records that the run's jail started: the hash of the profile it
    /// runs under (as the spawner compiled it) on the run, and `run.start`
    /// with the jail's pid, in one transaction.
    pub fn record_start(&self, run_id: &str, pid: i32, profile_hash: &str) -> Result<Run> {
        let now = Timestamp::now();
        self.write(|tx| {
            let mut run = load_run(tx, run_id)?;
            run.profile_hash = Some(profile_hash.to_owned());
            run.updated_at = now;
            save_run(tx, &run)?;
            let event = NewAuditEvent::new(types::RUN_START, &Actor::System)
                .run(&run.session_id, &run.id)
                .with("pid", pid)
                .with("profile", run.profile.as_str())
                .with("profile_hash", profile_hash);
            audit::append(tx, event, now)?;
            Ok(run)
        })
    }

    /// Updates the run's usage (the budget module's meters) as one atomic
    /// read-modify-write: `update` sees the run as stored now (its usage, its
    /// budget window, its state) and returns the new usage. So concurrent
    /// updates (a step counted by a capability call, a poll of the cgroup)
    /// never overwrite each other, and a reading taken before a fresh budget
    /// window opened can be recognised by its window start and dropped.
    /// Returns the updated run. Not audited: it is a measurement, taken
    /// often; the decisions made from it (`run.budget_exceeded`, the
    /// transitions) are.
    pub fn update_usage(&self, run_id: &str, update: impl FnOnce(&Run) -> Usage) -> Result<Run> {
        let now = Timestamp::now();
        self.write(|tx| {
            let mut run = load_run(tx, run_id)?;
            let usage = update(&run);
            if !usage.wall_secs.is_finite() || !usage.cpu_secs.is_finite() {
                return Err(RequestError::new("usage", "wall_secs and cpu_secs must be finite numbers").into());
            }
            run.usage = usage;
            run.updated_at = now;
            save_run(tx, &run)?;
            Ok(run)
        })
    }
}

/// One state change, as [`move_run`] applies it.
pub(super) struct Move<'a> {
    pub to: RunState,
    pub reason: Option<&'a str>,
    /// Open a fresh budget window if the move is to `active`. False only for
    /// the automatic resume by an inbound message.
    pub fresh_window: bool,
    pub budget: Option<&'a BudgetPatch>,
}

/// The one place a run's state changes: checks the table, the predicate (for
/// `done`) and the one-active-run rule (for `active`), applies the move's
/// effects, saves the run and appends its audit event. Returns the previous
/// state.
pub(super) fn move_run(
    tx: &Transaction<'_>,
    run: &mut Run,
    change: &Move<'_>,
    actor: &Actor,
    now: Timestamp,
) -> Result<RunState> {
    let from = run.state;
    let to = change.to;
    check_transition(from, to)?;
    if to == RunState::Done {
        predicate_allows_done(tx, run, actor)?;
    }
    let fresh_window = to == RunState::Active && change.fresh_window;
    if to == RunState::Active {
        if let Some(active) = active_run_id(tx, &run.session_id)? {
            return Err(StoreError::ActiveRunExists { session_id: run.session_id.clone(), run_id: active });
        }
        run.started_at.get_or_insert(now);
        if fresh_window {
            run.usage = run.usage.fresh_window();
            run.budget_window_started_at = Some(now);
        }
    }
    if to.is_terminal() {
        run.ended_at = Some(now);
    }
    if let Some(patch) = change.budget {
        run.budget = run.budget.merged(patch);
    }
    run.state = to;
    run.state_reason = change.reason.map(str::to_owned);
    run.updated_at = now;
    save_run(tx, run)?;

    let kind = if to == RunState::Cancelled { types::RUN_CANCEL } else { types::RUN_TRANSITION };
    let mut event = NewAuditEvent::new(kind, actor)
        .run(&run.session_id, &run.id)
        .with("from", from.as_str())
        .with("to", to.as_str())
        .with("reason", change.reason)
        .with("fresh_budget_window", fresh_window);
    if change.budget.is_some() {
        event = event.with("budget", to_value(&run.budget)?);
    }
    audit::append(tx, event, now)?;
    Ok(from)
}

fn predicate_allows_done(tx: &Transaction<'_>, run: &Run, actor: &Actor) -> Result<()> {
    let predicate = &run.completion_predicate;
    let succeeded = match predicate.required_capability() {
        Some(capability_id) => audit::capability_succeeded(tx, &run.id, capability_id)?,
        None => false,
    };
    predicate.check_done(actor, |_| succeeded)?;
    Ok(())
}

pub(super) fn load_run(tx: &Transaction<'_>, run_id: &str) -> Result<Run> {
    let cols = run_columns();
    let sql = format!("SELECT {cols} FROM runs WHERE id = ?1");
    let row = tx
        .prepare_cached(&sql)
        .and_then(|mut st| st.query_row([run_id], RunRow::read).optional())
        .ctx("reading a run")?;
    row.ok_or_else(|| StoreError::RunNotFound { run_id: run_id.to_owned() })?.into_run()
}

fn query_runs(tx: &Transaction<'_>, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Run>> {
    let mut st = tx.prepare_cached(sql).ctx("listing runs")?;
    let rows = st.query_map(params, RunRow::read).ctx("listing runs")?;
    rows.map(|row| row.ctx("listing runs")?.into_run()).collect()
}

pub(super) fn active_run_id(tx: &Transaction<'_>, session_id: &str) -> Result<Option<String>> {
    tx.prepare_cached("SELECT id FROM runs WHERE session_id = ?1 AND state = 'active'")
        .and_then(|mut st| st.query_row([session_id], |r| r.get(0)).optional())
        .ctx("looking for the session's active run")
}

fn oldest_queued(tx: &Transaction<'_>, session_id: &str) -> Result<Option<String>> {
    tx.prepare_cached(
        "SELECT id FROM runs WHERE session_id = ?1 AND state = 'queued' ORDER BY created_at, rowid LIMIT 1",
    )
    .and_then(|mut st| st.query_row([session_id], |r| r.get(0)).optional())
    .ctx("looking for the session's queued runs")
}

fn insert_run(tx: &Transaction<'_>, run: &Run) -> Result<()> {
    let cols = run_columns();
    let sql = format!(
        "INSERT INTO runs ({cols}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    );
    let mut st = tx.prepare_cached(&sql).ctx("inserting a run")?;
    st.execute(rusqlite::params![
        run.id,
        run.session_id,
        run.goal,
        run.state.as_str(),
        run.state_reason,
        to_json(&run.agent)?,
        run.profile,
        run.profile_hash,
        to_json(&run.budget)?,
        run.budget_policy.as_str(),
        to_json(&run.usage)?,
        run.budget_window_started_at.map(|t| t.to_string()),
        run.completion_predicate.to_string(),
        run.current_step_id,
        run.exit.as_ref().map(to_json).transpose()?,
        run.created_at.to_string(),
        run.updated_at.to_string(),
        run.started_at.map(|t| t.to_string()),
        run.ended_at.map(|t| t.to_string()),
        to_json(&run.metadata)?,
        run.capabilities.as_ref().map(to_json).transpose()?,
    ])
    .ctx("inserting a run")?;
    Ok(())
}

/// Writes back the fields a run changes over its life; the rest (session,
/// goal, agent, profile, policy, predicate, metadata, created_at) are fixed
/// at creation.
pub(super) fn save_run(tx: &Transaction<'_>, run: &Run) -> Result<()> {
    let mut st = tx
        .prepare_cached(
            "UPDATE runs SET state = ?2, state_reason = ?3, profile_hash = ?4, budget = ?5, usage = ?6, \
             budget_window_started_at = ?7, current_step_id = ?8, exit = ?9, updated_at = ?10, started_at = ?11, \
             ended_at = ?12 WHERE id = ?1",
        )
        .ctx("saving a run")?;
    st.execute(rusqlite::params![
        run.id,
        run.state.as_str(),
        run.state_reason,
        run.profile_hash,
        to_json(&run.budget)?,
        to_json(&run.usage)?,
        run.budget_window_started_at.map(|t| t.to_string()),
        run.current_step_id,
        run.exit.as_ref().map(to_json).transpose()?,
        run.updated_at.to_string(),
        run.started_at.map(|t| t.to_string()),
        run.ended_at.map(|t| t.to_string()),
    ])
    .ctx("saving a run")?;
    Ok(())
}

pub(super) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what: "value",
        id: std::any::type_name::<T>().to_owned(),
        reason: e.to_string(),
    })
}

pub(super) fn to_value<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt {
        what: "value",
        id: std::any::type_name::<T>().to_owned(),
        reason: e.to_string(),
    })
}

/// A `runs` row as stored, before its text is parsed into a [`Run`]: the
/// row closure can only fail with rusqlite's errors, while a value that does
/// not parse is [`StoreError::Corrupt`], naming the run and the column.
struct RunRow {
    id: String,
    /// Every column of [`RUN_COLUMN_NAMES`], in order, as text.
    values: [Option<String>; RUN_COLUMN_NAMES.len()],
}

impl RunRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<RunRow> {
        let mut values: [Option<String>; RUN_COLUMN_NAMES.len()] = Default::default();
        for (i, slot) in values.iter_mut().enumerate() {
            *slot = row.get(i)?;
        }
        Ok(RunRow { id: row.get(0)?, values })
    }

    fn into_run(mut self) -> Result<Run> {
        Ok(Run {
            id: self.text("id")?,
            session_id: self.text("session_id")?,
            goal: self.text("goal")?,
            state: self.parse("state")?,
            state_reason: self.take("state_reason"),
            agent: self.json("agent")?,
            profile: self.text("profile")?,
            profile_hash: self.take("profile_hash"),
            budget: self.json("budget")?,
            budget_policy: self.parse("budget_policy")?,
            usage: self.json("usage")?,
            budget_window_started_at: self.parse_opt("budget_window_started_at")?,
            completion_predicate: self.parse("completion_predicate")?,
            current_step_id: self.take("current_step_id"),
            exit: self.json_opt("exit")?,
            created_at: self.parse("created_at")?,
            updated_at: self.parse("updated_at")?,
            started_at: self.parse_opt("started_at")?,
            ended_at: self.parse_opt("ended_at")?,
            metadata: self.json("metadata")?,
            capabilities: self.json_opt("capabilities")?,
        })
    }

    fn take(&mut self, column: &'static str) -> Option<String> {
        let index = RUN_COLUMN_NAMES.iter().position(|c| *c == column)?;
        self.values[index].take()
    }

    fn corrupt(&self, column: &'static str, reason: impl ToString) -> StoreError {
        StoreError::Corrupt { what: column, id: self.id.clone(), reason: reason.to_string() }
    }

    fn text(&mut self, column: &'static str) -> Result<String> {
        self.take(column).ok_or_else(|| self.corrupt(column, "missing"))
    }

    fn parse<T: FromStr>(&mut self, column: &'static str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.text(column)?.parse().map_err(|e| self.corrupt(column, e))
    }

    fn parse_opt<T: FromStr>(&mut self, column: &'static str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.take(column).map(|text| text.parse().map_err(|e| self.corrupt(column, e))).transpose()
    }

    fn json<T: DeserializeOwned>(&mut self, column: &'static str) -> Result<T> {
        serde_json::from_str(&self.text(column)?).map_err(|e| self.corrupt(column, e))
    }

    fn json_opt<T: DeserializeOwned>(&mut self, column: &'static str) -> Result<Option<T>> {
        self.take(column).map(|text| serde_json::from_str(&text).map_err(|e| self.corrupt(column, e))).transpose()
    }
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
