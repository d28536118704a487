//! Tests of the store as a whole: opening, reopening, pragmas, migrations.

use std::os::unix::fs::PermissionsExt;

use rusqlite::Connection;

use super::test_util::*;
use super::*;
use crate::lifecycle::RunState;
use crate::model::Direction;

#[test]
fn opens_with_wal_full_sync_and_foreign_keys() {
    let (dir, store) = store();
    let conn = store.lock();
    let pragma = |name: &str| -> String {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .unwrap()
    };
    assert_eq!(pragma("journal_mode"), "wal");
    assert_eq!(pragma("synchronous"), "2", "FULL");
    assert_eq!(pragma("foreign_keys"), "1");
    assert_eq!(pragma("busy_timeout"), "5000");
    assert_eq!(pragma("application_id"), APPLICATION_ID.to_string());
    drop(conn);
    assert_eq!(store.path(), dir.path().join(DB_FILE));
    let mode = std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn creates_a_missing_state_directory_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("var/lib/ccos");
    Store::open(&state).unwrap();
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (run, head) = {
        let store = Store::open(dir.path()).unwrap();
        let run = create(&store, "s");
        store
            .transition(&run.id, RunState::PausedExternalEvent, Some("awaiting_user_input"), &agent(&run), None)
            .unwrap();
        store.ingest_message("s", "answer", None, &admin()).unwrap();
        let run = store.get_run(&run.id).unwrap();
        (run, store.verify_audit().unwrap())
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.get_run(&run.id).unwrap(), run);
    assert_eq!(store.live_runs().unwrap(), std::slice::from_ref(&run));
    let messages = store.list_messages("s", Some(Direction::In)).unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(store.verify_audit().unwrap(), head);
    assert!(head.ok && head.events == 4);
    // The chain continues where it left off.
    store.transition(&run.id, RunState::Done, None, &admin(), None).unwrap();
    let after = store.verify_audit().unwrap();
    assert!(after.ok && after.events == 5);
}

#[test]
fn the_schema_version_is_recorded() {
    let (_dir, store) = store();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, schema::MIGRATIONS.len() as i64);
    let tables: Vec<String> = raw(&store)
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, ["audit_events", "messages", "runs", "sessions"]);
}

#[test]
fn a_database_from_a_newer_release_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let newer = SCHEMA_VERSION + 1;
    Connection::open(dir.path().join(DB_FILE)).unwrap().pragma_update(None, "user_version", newer).unwrap();
    let err = Store::open(dir.path()).err().expect("refused");
    let versions = match &err {
        StoreError::SchemaTooNew { found, supported, .. } => (*found, *supported),
        other => panic!("{other:?}"),
    };
    assert_eq!(versions, (newer, SCHEMA_VERSION));
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("schema version {newer}")) && msg.contains(&format!("up to version {SCHEMA_VERSION}")),
        "{msg}"
    );
    assert!(msg.contains("ccos.db"), "{msg}");
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Connection::open(dir.path().join(DB_FILE)).unwrap().pragma_update(None, "application_id", 42).unwrap();
    let err = Store::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StoreError::NotOurDatabase { found: 42, .. }), "{err:?}");
}

#[test]
fn a_failed_migration_leaves_the_previous_version_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut conn = Connection::open(&path).unwrap();
    let migrations = [schema::MIGRATIONS[0], "CREATE TABLE half_done (x INTEGER); THIS IS NOT SQL;"];
    assert!(schema::migrate(&mut conn, &path, &migrations).is_err());
    assert_eq!(schema::user_version(&conn).unwrap(), 1, "the first migration committed");
    let half: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'half_done'", [], |r| r.get(0)).unwrap();
    assert_eq!(half, 0, "the failed one left nothing behind");
    // Fixed, it applies from where it stopped.
    let fixed = [schema::MIGRATIONS[0], "CREATE TABLE half_done (x INTEGER);"];
    schema::migrate(&mut conn, &path, &fixed).unwrap();
    assert_eq!(schema::user_version(&conn).unwrap(), 2);
}

#[test]
fn the_store_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let (_dir, store) = store();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let store = &store;
            scope.spawn(move || {
                for i in 0..5 {
                    create(store, &format!("t{t}-{i}"));
                }
            });
        }
    });
    let v = store.verify_audit().unwrap();
    assert!(v.ok && v.events == 20, "{v:?}");
}

const CHILD_DIR_ENV: &str = "CCOS_STORE_TEST_CHILD_DIR";

/// Run by `an_acknowledged_write_survives_sigkill` in a child process: writes,
/// acknowledges on stdout, then waits to be killed.
#[test]
#[ignore = "a helper process of an_acknowledged_write_survives_sigkill"]
fn sigkill_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    let store = Store::open(std::path::Path::new(&dir)).unwrap();
    let run = create(&store, "s");
    store.ingest_message("s", "acknowledged", None, &admin()).unwrap();
    println!("ACK {}", run.id);
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn an_acknowledged_write_survives_sigkill() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "store::tests::sigkill_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let run_id = stdout
        .lines()
        .map_while(Result::ok)
        // The harness may print "test ... " on the same line first.
        .find_map(|line| line.split_once("ACK ").map(|(_, id)| id.trim().to_owned()))
        .expect("the child acknowledged a write");
    child.kill().unwrap(); // SIGKILL: no destructor, no checkpoint, no close
    child.wait().unwrap();

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get_run(&run_id).unwrap().state, RunState::Active);
    assert_eq!(store.list_messages("s", Some(Direction::In)).unwrap()[1].text, "acknowledged");
    let v = store.verify_audit().unwrap();
    assert!(v.ok && v.events == 2, "{v:?}");
}
