use super::*;
use crate::audit::{event_hash, NewAuditEvent};
use crate::lifecycle::RunState;
use crate::model::Actor;
use crate::store::test_util::*;
use crate::store::MAX_LIMIT;

#[test]
fn every_operation_extends_a_chain_that_verifies() {
    let (_dir, store) = store();
    assert_eq!(
        store.verify_audit().unwrap(),
        Verification { ok: true, events: 0, head_hash: GENESIS_HASH.into(), first_bad_seq: None }
    );

    let start =
        store.append_audit(NewAuditEvent::new(types::SUPERVISOR_START, &Actor::System).with("version", "0.1.0"));
    assert_eq!(start.unwrap().prev_hash, GENESIS_HASH);
    let run = create(&store, "s");
    store.transition(&run.id, RunState::PausedExternalEvent, None, &agent(&run), None).unwrap();
    store.ingest_message("s", "hi", None, &admin()).unwrap();
    store.send_message(&run.id, "bye", "agent", &agent(&run)).unwrap();
    store.transition(&run.id, RunState::Cancelled, None, &admin(), None).unwrap();

    let events = store.list_audit(&AuditFilter::default()).unwrap();
    let kinds: Vec<_> = events.iter().rev().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "supervisor.start",
            "run.create",
            "run.transition",
            "message.ingest",
            "run.transition",
            "message.send",
            "run.cancel"
        ]
    );
    let seqs: Vec<_> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [7, 6, 5, 4, 3, 2, 1], "latest first");
    for pair in events.windows(2) {
        assert_eq!(pair[0].prev_hash, pair[1].hash);
    }
    let v = store.verify_audit().unwrap();
    assert_eq!(v, Verification { ok: true, events: 7, head_hash: events[0].hash.clone(), first_bad_seq: None });
    assert_eq!(events[0].actor, "uid:0");
    assert_eq!(events[1].actor, format!("agent:{}", run.id));
}

#[test]
fn an_edited_event_is_named() {
    let (_dir, store) = store();
    for s in ["a", "b", "c"] {
        create(&store, s);
    }
    raw(&store).execute("UPDATE audit_events SET detail = '{\"state\":\"done\"}' WHERE seq = 2", []).unwrap();
    let v = store.verify_audit().unwrap();
    assert_eq!((v.ok, v.events, v.first_bad_seq), (false, 3, Some(2)));
}

#[test]
fn an_edit_that_breaks_the_json_is_named_too() {
    let (_dir, store) = store();
    for s in ["a", "b", "c"] {
        create(&store, s);
    }
    raw(&store).execute("UPDATE audit_events SET detail = '{oops' WHERE seq = 3", []).unwrap();
    assert_eq!(store.verify_audit().unwrap().first_bad_seq, Some(3));
    raw(&store).execute("UPDATE audit_events SET at = 'yesterday' WHERE seq = 1", []).unwrap();
    assert_eq!(store.verify_audit().unwrap().first_bad_seq, Some(1));
}

#[test]
fn an_edit_with_a_recomputed_hash_is_caught_at_the_next_link() {
    let (_dir, store) = store();
    for s in ["a", "b", "c"] {
        create(&store, s);
    }
    let mut second = store.list_audit(&AuditFilter::default()).unwrap().remove(1);
    second.actor = "uid:1000".into();
    second.hash = event_hash(&second);
    raw(&store)
        .execute("UPDATE audit_events SET actor = ?1, hash = ?2 WHERE seq = 2", (&second.actor, &second.hash))
        .unwrap();
    assert_eq!(store.verify_audit().unwrap().first_bad_seq, Some(3));
}

#[test]
fn a_deleted_event_is_a_gap() {
    let (_dir, store) = store();
    for s in ["a", "b", "c", "d"] {
        create(&store, s);
    }
    raw(&store).execute("DELETE FROM audit_events WHERE seq = 2", []).unwrap();
    let v = store.verify_audit().unwrap();
    assert_eq!((v.ok, v.events, v.first_bad_seq), (false, 3, Some(2)));
}

#[test]
fn listing_filters_and_bounds() {
    let (_dir, store) = store();
    let a = create(&store, "s1");
    let b = create(&store, "s2");
    store.transition(&a.id, RunState::Done, None, &agent(&a), None).unwrap();
    let seqs = |f: AuditFilter| store.list_audit(&f).unwrap().into_iter().map(|e| e.seq).collect::<Vec<_>>();

    assert_eq!(seqs(AuditFilter::default()), [3, 2, 1]);
    assert_eq!(seqs(AuditFilter { run_id: Some(a.id.clone()), ..Default::default() }), [3, 1]);
    assert_eq!(seqs(AuditFilter { session_id: Some("s2".into()), ..Default::default() }), [2]);
    assert_eq!(
        seqs(AuditFilter { run_id: Some(b.id.clone()), session_id: Some("s1".into()), ..Default::default() }),
        Vec::<u64>::new()
    );
    assert_eq!(seqs(AuditFilter { after_seq: Some(1), ..Default::default() }), [3, 2], "strictly greater");
    assert_eq!(seqs(AuditFilter { after_seq: Some(3), ..Default::default() }), Vec::<u64>::new());
    assert_eq!(seqs(AuditFilter { limit: 1, ..Default::default() }), [3]);
    for limit in [0, MAX_LIMIT + 1] {
        let err = store.list_audit(&AuditFilter { limit, ..Default::default() }).unwrap_err();
        assert_eq!(err.code(), "bad_request");
    }
}
