//! Helpers shared by the store's tests: a store in a temporary directory,
//! runs put into any state, raw SQL access for tampering.

use rusqlite::Connection;
use tempfile::TempDir;

use super::Store;
use crate::lifecycle::RunState;
use crate::model::{Actor, CreateRunRequest, NewRun, Run, RunDefaults};

pub fn store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

pub fn admin() -> Actor {
    Actor::Admin { uid: 0 }
}

pub fn agent(run: &Run) -> Actor {
    Actor::Agent { run_id: run.id.clone() }
}

pub fn new_run(session: &str) -> NewRun {
    CreateRunRequest { session_id: session.into(), goal: format!("goal of {session}"), ..Default::default() }
        .resolve(&RunDefaults::default())
        .unwrap()
}

pub fn queued(session: &str) -> NewRun {
    NewRun { queue: true, ..new_run(session) }
}

pub fn create(store: &Store, session: &str) -> Run {
    store.create_run(&new_run(session), &admin()).unwrap()
}

/// A fresh run of its own session, brought into `state` by allowed moves.
pub fn run_in(store: &Store, session: &str, state: RunState) -> Run {
    if state == RunState::Queued {
        let blocker = create(store, session);
        let run = store.create_run(&queued(session), &admin()).unwrap();
        store.transition(&blocker.id, RunState::Cancelled, None, &admin(), None).unwrap();
        return store.get_run(&run.id).unwrap();
    }
    let run = create(store, session);
    if state == RunState::Active {
        return run;
    }
    store.transition(&run.id, state, Some("test"), &admin(), None).unwrap().run
}

/// A second connection to the same file, as an operator with `sqlite3` (or
/// an attacker) would have.
pub fn raw(store: &Store) -> Connection {
    Connection::open(store.path()).unwrap()
}

pub fn audit_len(store: &Store) -> u64 {
    store.verify_audit().unwrap().events
}
