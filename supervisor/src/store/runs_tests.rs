use super::*;
use crate::audit::{capability_call, capability_result};
use crate::lifecycle::{can_transition, CompletionPredicate};
use crate::model::{Budget, ExitReason};
use crate::store::test_util::*;
use crate::store::MAX_LIMIT;

#[test]
fn every_pair_of_states_through_the_store() {
    let (_dir, store) = store();
    for (i, from) in RunState::ALL.into_iter().enumerate() {
        for (j, to) in RunState::ALL.into_iter().enumerate() {
            let run = run_in(&store, &format!("s{i}-{j}"), from);
            assert_eq!(run.state, from);
            let events_before = audit_len(&store);
            let result = store.transition(&run.id, to, None, &admin(), None);
            if can_transition(from, to) {
                let moved = result.unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                assert_eq!((moved.previous_state, moved.run.state), (from, to));
                assert_eq!(store.get_run(&run.id).unwrap().state, to);
                assert_eq!(audit_len(&store), events_before + 1, "{from} -> {to} is audited");
            } else {
                match result {
                    Err(StoreError::InvalidTransition(e)) => assert_eq!((e.from, e.to), (from, to)),
                    other => panic!("{from} -> {to}: expected invalid_transition, got {other:?}"),
                }
                assert_eq!(store.get_run(&run.id).unwrap().state, from, "a refusal changes nothing");
                assert_eq!(audit_len(&store), events_before, "a refusal writes no event");
            }
        }
    }
}

#[test]
fn terminal_runs_accept_nothing() {
    let (_dir, store) = store();
    for terminal in [RunState::Done, RunState::Failed, RunState::Cancelled] {
        let run = run_in(&store, terminal.as_str(), terminal);
        assert!(run.ended_at.is_some());
        for to in RunState::ALL {
            let err = store.transition(&run.id, to, None, &admin(), None).unwrap_err();
            assert_eq!(err.code(), "invalid_transition");
            assert!(err.to_string().contains("is terminal"), "{err}");
        }
    }
}

#[test]
fn unknown_run_is_not_found() {
    let (_dir, store) = store();
    let err = store.get_run("run_nope").unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("run_not_found", 404));
    assert!(store.transition("run_nope", RunState::Cancelled, None, &admin(), None).is_err());
}

#[test]
fn one_active_run_per_session() {
    let (_dir, store) = store();
    let first = create(&store, "s");
    assert_eq!(first.state, RunState::Active);
    assert!(first.started_at.is_some() && first.budget_window_started_at.is_some());
    let events = audit_len(&store);

    let err = store.create_run(&new_run("s"), &admin()).unwrap_err();
    match &err {
        StoreError::ActiveRunExists { session_id, run_id } => assert_eq!((&**session_id, run_id), ("s", &first.id)),
        other => panic!("{other:?}"),
    }
    assert_eq!((err.code(), err.http_status()), ("active_run_exists", 409));
    assert!(err.to_string().contains(&first.id));
    assert_eq!(store.list_runs(&RunFilter::default()).unwrap().len(), 1, "the refused run is not stored");
    assert_eq!(audit_len(&store), events);

    let waiting = store.create_run(&queued("s"), &admin()).unwrap();
    assert_eq!(waiting.state, RunState::Queued);
    assert_eq!((waiting.started_at, waiting.budget_window_started_at), (None, None));

    assert_eq!(create(&store, "other").state, RunState::Active, "sessions are independent");
}

#[test]
fn paused_runs_do_not_block_but_cannot_resume_over_an_active_one() {
    let (_dir, store) = store();
    let paused = run_in(&store, "s", RunState::PausedApproval);
    let active = create(&store, "s");
    assert_eq!(active.state, RunState::Active);
    let err = store.transition(&paused.id, RunState::Active, None, &admin(), None).unwrap_err();
    assert!(matches!(&err, StoreError::ActiveRunExists { run_id, .. } if *run_id == active.id), "{err:?}");
    assert_eq!(store.get_run(&paused.id).unwrap().state, RunState::PausedApproval);
}

#[test]
fn the_database_itself_refuses_a_second_active_run() {
    let (_dir, store) = store();
    let a = run_in(&store, "s", RunState::PausedApproval);
    create(&store, "s");
    let err = raw(&store).execute("UPDATE runs SET state = 'active' WHERE id = ?1", [&a.id]).unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
}

#[test]
fn queued_runs_start_in_order_when_the_session_frees_up() {
    let (_dir, store) = store();
    let a = create(&store, "s");
    let b = store.create_run(&queued("s"), &admin()).unwrap();
    let c = store.create_run(&queued("s"), &admin()).unwrap();
    assert_eq!(store.next_queued_run("s").unwrap(), None, "a is still active");
    assert_eq!(store.start_next_queued("s", &Actor::System).unwrap(), None);

    store.transition(&a.id, RunState::Done, None, &agent(&a), None).unwrap();
    // The session is free, but b and c wait in line: a queued request waits
    // behind them rather than jumping the queue.
    let d = store.create_run(&queued("s"), &admin()).unwrap();
    assert_eq!(d.state, RunState::Queued);
    assert_eq!(store.next_queued_run("s").unwrap().map(|r| r.id), Some(b.id.clone()));

    let started = store.start_next_queued("s", &Actor::System).unwrap().unwrap();
    assert_eq!((started.id.as_str(), started.state), (b.id.as_str(), RunState::Active));
    assert!(started.started_at.is_some() && started.budget_window_started_at.is_some());
    assert_eq!(store.get_run(&c.id).unwrap().state, RunState::Queued);
    assert_eq!(store.next_queued_run("s").unwrap(), None, "b is active now");
}

#[test]
fn kickoff_message_is_in_the_new_runs_inbox() {
    let (_dir, store) = store();
    let run = create(&store, "s");
    let messages = store.list_messages("s", None).unwrap();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.text, format!("Run started ({}). Goal:\ngoal of s", run.id));
    assert_eq!((m.sender.as_str(), m.direction, m.run_id.as_deref()), ("system", Direction::In, Some(&*run.id)));
    assert!(m.id.starts_with("msg_"));
    assert_eq!(store.take_inbox(&run.id).unwrap(), messages);
    assert!(store.take_inbox(&run.id).unwrap().is_empty(), "each message is delivered once");
}

#[test]
fn created_run_has_the_api_shape() {
    let (_dir, store) = store();
    let run = create(&store, "s");
    assert!(run.id.starts_with("run_"));
    let v = serde_json::to_value(&run).unwrap();
    for field in [
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
    ] {
        assert!(v.get(field).is_some(), "missing {field}");
    }
    assert_eq!(v.as_object().unwrap().len(), 21);
    assert_eq!(v["state"], "active");
    assert_eq!(
        v["usage"],
        serde_json::json!({"steps": 0, "tokens": 0, "wall_secs": 0.0, "cpu_secs": 0.0,
        "memory_peak_bytes": 0, "pids_peak": 0})
    );
    assert_eq!(store.get_run(&run.id).unwrap(), run, "what is stored reads back the same");
}

#[test]
fn explicit_activation_opens_a_fresh_budget_window_and_merges_a_budget() {
    let (_dir, store) = store();
    let run = create(&store, "s");
    let used = Usage { steps: 5, tokens: 10, wall_secs: 3.0, cpu_secs: 1.0, memory_peak_bytes: 100, pids_peak: 3 };
    store.update_usage(&run.id, |_| used).unwrap();
    let paused =
        store.transition(&run.id, RunState::PausedApproval, Some("budget_exceeded:steps"), &Actor::System, None);
    let paused = paused.unwrap().run;
    assert_eq!((paused.usage, paused.state_reason.as_deref()), (used, Some("budget_exceeded:steps")));

    let patch: BudgetPatch = serde_json::from_value(serde_json::json!({"max_steps": 100, "max_tokens": null})).unwrap();
    let resumed = store.transition(&run.id, RunState::Active, None, &admin(), Some(&patch)).unwrap().run;
    assert_eq!(resumed.usage, Usage { memory_peak_bytes: 100, pids_peak: 3, ..Usage::default() });
    assert!(resumed.budget_window_started_at > run.budget_window_started_at);
    assert_eq!(resumed.started_at, run.started_at, "started_at is the first start");
    assert_eq!(resumed.state_reason, None);
    assert_eq!(resumed.budget, Budget { max_steps: Some(100), max_tokens: None, ..Budget::DEFAULT });
}

#[test]
fn predicates_decide_done_for_agent_and_admin() {
    let (_dir, store) = store();
    let with = |session: &str, predicate: &str| {
        let new = NewRun { completion_predicate: predicate.parse().unwrap(), ..new_run(session) };
        store.create_run(&new, &admin()).unwrap()
    };
    let done = |run: &Run, actor: &Actor| store.transition(&run.id, RunState::Done, None, actor, None);
    let refused = |r: Result<Transitioned>| matches!(r, Err(StoreError::PredicateUnsatisfied(_)));

    let always = with("a", "always");
    assert!(done(&always, &agent(&always)).is_ok());

    let manual = with("m", "manual");
    let err = done(&manual, &agent(&manual)).unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("predicate_unsatisfied", 409));
    assert_eq!(store.get_run(&manual.id).unwrap().state, RunState::Active);
    assert!(done(&manual, &admin()).is_ok());

    let never = with("n", "never");
    assert!(refused(done(&never, &agent(&never))));
    assert!(refused(done(&never, &admin())));

    let cap = with("c", "capability_succeeded:mail.send");
    assert!(refused(done(&cap, &admin())));
    let call = |cap_id: &str, allowed: bool, success: bool| {
        let step = format!("{}-step-{cap_id}-{allowed}-{success}", cap.id);
        let step = allowed.then_some(step.as_str());
        store.append_audit(capability_call(&agent(&cap), "c", &cap.id, step, cap_id, allowed)).unwrap();
        if let Some(step) = step {
            store.append_audit(capability_result(&agent(&cap), "c", &cap.id, step, cap_id, success)).unwrap();
        }
    };
    call("mail.send", false, true); // refused calls do not count
    call("mail.send", true, false); // nor failed ones
    call("other.cap", true, true); // nor other capabilities
    assert!(refused(done(&cap, &agent(&cap))));
    assert!(refused(done(&cap, &admin())));
    call("mail.send", true, true);
    assert_eq!(
        store.succeeded_capabilities(&cap.id).unwrap().into_iter().collect::<Vec<_>>(),
        ["mail.send", "other.cap"]
    );
    assert!(done(&cap, &agent(&cap)).is_ok());
    assert_eq!(
        store.get_run(&cap.id).unwrap().completion_predicate,
        CompletionPredicate::CapabilitySucceeded("mail.send".into())
    );
}

#[test]
fn a_capability_success_in_another_run_does_not_count() {
    let (_dir, store) = store();
    let new = NewRun { completion_predicate: "capability_succeeded:x".parse().unwrap(), ..new_run("s") };
    let run = store.create_run(&new, &admin()).unwrap();
    store.append_audit(capability_result(&Actor::System, "s", "run_other", "run_other-step-1", "x", true)).unwrap();
    assert!(store.transition(&run.id, RunState::Done, None, &admin(), None).is_err());
}

fn exit(code: Option<i32>, signal: Option<i32>, reason: ExitReason) -> RunExit {
    RunExit { code, signal, reason }
}

#[test]
fn record_exit_ends_a_live_run_as_api_md_says() {
    let (_dir, store) = store();
    let ok = exit(Some(0), None, ExitReason::Exited);

    let run = create(&store, "a");
    let ended = store.record_exit(&run.id, &ok, None, &Actor::System).unwrap();
    assert_eq!((ended.state, ended.state_reason.as_deref()), (RunState::Done, Some("agent_exited")));
    assert_eq!(ended.exit, Some(ok));
    assert!(ended.ended_at.is_some());

    let manual =
        store.create_run(&NewRun { completion_predicate: CompletionPredicate::Manual, ..new_run("m") }, &admin());
    let ended = store.record_exit(&manual.unwrap().id, &ok, None, &Actor::System).unwrap();
    assert_eq!((ended.state, ended.state_reason.as_deref()), (RunState::Failed, Some("agent_exited")));

    let run = create(&store, "b");
    let ended = store.record_exit(&run.id, &exit(Some(3), None, ExitReason::Exited), None, &Actor::System).unwrap();
    assert_eq!((ended.state, ended.state_reason.as_deref()), (RunState::Failed, Some("agent_exited:3")));

    let run = create(&store, "c");
    let ended = store.record_exit(&run.id, &exit(None, Some(9), ExitReason::Oom), None, &Actor::System).unwrap();
    assert_eq!((ended.state, ended.state_reason.as_deref()), (RunState::Failed, Some("oom")));

    let run = create(&store, "d");
    let end = Some((RunState::Failed, "budget_exceeded:steps"));
    let ended = store.record_exit(&run.id, &exit(None, Some(9), ExitReason::BudgetExceeded), end, &Actor::System);
    assert_eq!(ended.unwrap().state_reason.as_deref(), Some("budget_exceeded:steps"));
}

#[test]
fn record_exit_after_cancel_keeps_the_state_and_records_once() {
    let (_dir, store) = store();
    let run = create(&store, "s");
    store.transition(&run.id, RunState::Cancelled, Some("user"), &admin(), None).unwrap();
    let killed = exit(None, Some(9), ExitReason::Cancelled);
    let ended = store.record_exit(&run.id, &killed, None, &Actor::System).unwrap();
    assert_eq!((ended.state, ended.exit), (RunState::Cancelled, Some(killed)));
    let again = store.record_exit(&run.id, &killed, None, &Actor::System).unwrap_err();
    assert!(matches!(again, StoreError::ExitAlreadyRecorded { .. }), "{again:?}");

    let live = create(&store, "t");
    let err = store.record_exit(&live.id, &killed, Some((RunState::PausedApproval, "x")), &Actor::System);
    assert_eq!(err.unwrap_err().code(), "bad_request");
    assert_eq!(store.get_run(&live.id).unwrap().exit, None);
}

#[test]
fn update_usage_is_a_checked_read_modify_write() {
    let (_dir, store) = store();
    let run = create(&store, "s");
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..10 {
                    store.update_usage(&run.id, |r| Usage { steps: r.usage.steps + 1, ..r.usage }).unwrap();
                }
            });
        }
    });
    assert_eq!(store.get_run(&run.id).unwrap().usage.steps, 40, "no increment is lost");

    let nan = |r: &Run| Usage { wall_secs: f64::NAN, ..r.usage };
    assert_eq!(store.update_usage(&run.id, nan).unwrap_err().code(), "bad_request");
    assert_eq!(store.get_run(&run.id).unwrap().usage.steps, 40, "a refused update changes nothing");
    assert_eq!(store.update_usage("run_nope", |r| r.usage).unwrap_err().code(), "run_not_found");
}

#[test]
fn list_is_most_recent_first_and_filters() {
    let (_dir, store) = store();
    let a = create(&store, "s1");
    let b = create(&store, "s2");
    let c = store.create_run(&queued("s1"), &admin()).unwrap();
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();

    assert_eq!(ids(store.list_runs(&RunFilter::default()).unwrap()), [&*c.id, &*b.id, &*a.id]);
    assert_eq!(ids(store.list_runs(&RunFilter { limit: 2, ..Default::default() }).unwrap()), [&*c.id, &*b.id]);
    let s1 = RunFilter { session_id: Some("s1".into()), ..Default::default() };
    assert_eq!(ids(store.list_runs(&s1).unwrap()), [&*c.id, &*a.id]);
    let s1_queued = RunFilter { state: Some(RunState::Queued), ..s1 };
    assert_eq!(ids(store.list_runs(&s1_queued).unwrap()), [&*c.id]);
    let none = RunFilter { session_id: Some("s9".into()), ..Default::default() };
    assert!(store.list_runs(&none).unwrap().is_empty());
}

#[test]
fn list_limit_bounds() {
    let (_dir, store) = store();
    for limit in [0, MAX_LIMIT + 1] {
        let err = store.list_runs(&RunFilter { limit, ..Default::default() }).unwrap_err();
        assert_eq!((err.code(), err.http_status()), ("bad_request", 400));
        assert!(err.to_string().contains(&limit.to_string()), "{err}");
    }
    for limit in [1, MAX_LIMIT] {
        assert!(store.list_runs(&RunFilter { limit, ..Default::default() }).is_ok());
    }
}

#[test]
fn live_runs_are_those_that_may_have_a_jail() {
    let (_dir, store) = store();
    let mut live = Vec::new();
    for (i, state) in RunState::ALL.into_iter().enumerate() {
        let run = run_in(&store, &format!("s{i}"), state);
        if state.has_jail() {
            live.push(run.id);
        }
    }
    let found: Vec<_> = store.live_runs().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(found, live);
}

#[test]
fn a_corrupt_row_is_reported_with_its_run_and_column() {
    let (_dir, store) = store();
    let run = create(&store, "s");
    raw(&store).execute("UPDATE runs SET budget = 'not json' WHERE id = ?1", [&run.id]).unwrap();
    let err = store.get_run(&run.id).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { what: "budget", id, .. } if *id == run.id), "{err:?}");
    assert_eq!(err.http_status(), 500);
}
