use super::*;
use crate::model::Usage;
use crate::store::test_util::*;

fn send(store: &Store, session: &str, text: &str) -> Ingested {
    store.ingest_message(session, text, None, &admin()).unwrap()
}

#[test]
fn inbound_goes_to_the_active_run() {
    let (_dir, store) = store();
    let older = run_in(&store, "s", RunState::PausedExternalEvent);
    let active = create(&store, "s");
    let got = send(&store, "s", "hello");
    assert_eq!((got.run_id.as_deref(), got.resumed), (Some(&*active.id), false));
    assert_eq!(store.get_run(&older.id).unwrap().state, RunState::PausedExternalEvent, "not resumed");
    let inbox = store.take_inbox(&active.id).unwrap();
    assert_eq!(inbox.iter().map(|m| m.text.as_str()).collect::<Vec<_>>()[1..], ["hello"]);
    assert_eq!(inbox[1].sender, DEFAULT_SENDER);
}

#[test]
fn inbound_resumes_the_latest_paused_external_event_run_without_a_fresh_window() {
    let (_dir, store) = store();
    let old = run_in(&store, "s", RunState::PausedExternalEvent);
    let latest = create(&store, "s");
    let used = Usage { steps: 3, tokens: 7, ..Usage::default() };
    store.update_usage(&latest.id, |_| used).unwrap();
    store
        .transition(&latest.id, RunState::PausedExternalEvent, Some("awaiting_user_input"), &agent(&latest), None)
        .unwrap();
    // A newer paused_approval run does not take precedence.
    run_in(&store, "s", RunState::PausedApproval);
    let events = audit_len(&store);

    let got = store.ingest_message("s", "the answer", Some("alice"), &admin()).unwrap();
    assert_eq!((got.run_id.as_deref(), got.resumed), (Some(&*latest.id), true));
    let resumed = store.get_run(&latest.id).unwrap();
    assert_eq!(resumed.state, RunState::Active);
    assert_eq!(resumed.state_reason.as_deref(), Some(RESUMED_BY_MESSAGE));
    assert_eq!(resumed.usage, used, "no fresh budget window");
    assert_eq!(resumed.budget_window_started_at, latest.budget_window_started_at);
    assert_eq!(store.get_run(&old.id).unwrap().state, RunState::PausedExternalEvent);

    let trail = store.list_audit(&crate::store::AuditFilter::default()).unwrap();
    assert_eq!(audit_len(&store), events + 2);
    assert_eq!(trail[1].event_type, "message.ingest");
    assert_eq!(trail[1].detail["resumed"], true);
    assert_eq!(trail[1].detail.get("text"), None, "the text stays out of the audit");
    assert_eq!(trail[0].event_type, "run.transition");
    assert_eq!(trail[0].detail["fresh_budget_window"], false);
    let texts: Vec<_> = store.take_inbox(&latest.id).unwrap().into_iter().map(|m| (m.sender, m.text)).collect();
    assert_eq!(texts.last().unwrap(), &("alice".to_owned(), "the answer".to_owned()));
}

#[test]
fn inbound_goes_to_the_latest_paused_approval_run_without_resuming_it() {
    let (_dir, store) = store();
    run_in(&store, "s", RunState::PausedApproval);
    let latest = run_in(&store, "s", RunState::PausedApproval);
    run_in(&store, "s", RunState::Done);
    let got = send(&store, "s", "go on");
    assert_eq!((got.run_id.as_deref(), got.resumed), (Some(&*latest.id), false));
    assert_eq!(store.get_run(&latest.id).unwrap().state, RunState::PausedApproval);
}

#[test]
fn inbound_without_a_live_run_is_kept_for_no_run() {
    let (_dir, store) = store();
    run_in(&store, "s", RunState::Queued);
    let got = send(&store, "s", "anyone?");
    assert_eq!(got.run_id, None);
    let fresh = send(&store, "brand-new", "hi");
    assert_eq!(fresh.run_id, None);
    assert_eq!(store.list_messages("brand-new", None).unwrap()[0].run_id, None);
}

#[test]
fn inbound_input_is_checked() {
    let (_dir, store) = store();
    for (session, text, sender, field) in [
        ("s", "", None, "text"),
        ("s", "x", Some("system"), "sender"),
        ("s", "x", Some(""), "sender"),
        ("bad/session", "x", None, "session_id"),
    ] {
        match store.ingest_message(session, text, sender, &admin()) {
            Err(StoreError::BadRequest(e)) => assert_eq!(e.field, field),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(audit_len(&store), 0);
}

#[test]
fn outbound_and_listing_by_direction() {
    let (_dir, store) = store();
    let run = create(&store, "s");
    let out = store.send_message(&run.id, "done!", "agent", &agent(&run)).unwrap();
    assert_eq!((out.direction, out.run_id.as_deref()), (Direction::Out, Some(&*run.id)));
    send(&store, "s", "thanks");

    let all = store.list_messages("s", None).unwrap();
    let texts: Vec<_> = all.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts[1..], ["done!", "thanks"], "oldest first");
    assert_eq!(store.list_messages("s", Some(Direction::Out)).unwrap(), [out]);
    assert_eq!(store.list_messages("s", Some(Direction::In)).unwrap().len(), 2);
    assert!(store.send_message("run_nope", "x", "agent", &Actor::System).is_err());

    // Outbound messages never land in the inbox.
    let inbox: Vec<_> = store.take_inbox(&run.id).unwrap().into_iter().map(|m| m.direction).collect();
    assert_eq!(inbox, [Direction::In, Direction::In]);
}
