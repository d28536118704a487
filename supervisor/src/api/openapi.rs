//! `GET /v1/openapi.json`: built from [`ROUTES`] (paths, methods, query
//! parameters, bodies, statuses) and [`schemas`] (one JSON schema per body
//! type, kept next to each other here; the tests check every field the
//! type serializes is in its schema, and nothing else).

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::body::{json_response, Response};
use super::routes::{Route, ROUTES};

fn string() -> Value {
    json!({"type": "string"})
}
fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}
fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}
fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": reference(name)})
}
fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

const BUDGET_FIELDS: [&str; 6] =
    ["max_steps", "max_duration_secs", "max_cpu_secs", "max_memory_bytes", "max_pids", "max_tokens"];

fn budget(required: &[&str]) -> Value {
    let props: Map<String, Value> = BUDGET_FIELDS.iter().map(|f| ((*f).to_owned(), nullable("integer"))).collect();
    object(required, Value::Object(props))
}

/// The schema of every body the API reads or answers, by name.
pub fn schemas() -> Map<String, Value> {
    let states = json!({"type": "string", "enum": crate::lifecycle::RunState::ALL.map(|s| s.as_str())});
    let mut s = Map::new();
    let mut add = |name: &str, schema: Value| {
        s.insert(name.to_owned(), schema);
    };
    add(
        "Error",
        object(
            &["error"],
            json!({"error": object(&["code", "message"], json!({"code": string(), "message": string()}))}),
        ),
    );
    add(
        "AgentSpec",
        object(&["argv", "env"], json!({"argv": {"type": "array", "items": string()}, "env": {"type": "object"}})),
    );
    add("Budget", budget(&BUDGET_FIELDS));
    add("BudgetPatch", budget(&[]));
    add(
        "Usage",
        object(
            &["steps", "tokens", "wall_secs", "cpu_secs", "memory_peak_bytes", "pids_peak"],
            json!({"steps": {"type": "integer"}, "tokens": {"type": "integer"}, "wall_secs": {"type": "number"},
                   "cpu_secs": {"type": "number"}, "memory_peak_bytes": {"type": "integer"},
                   "pids_peak": {"type": "integer"}}),
        ),
    );
    add(
        "RunExit",
        object(
            &["code", "signal", "reason"],
            json!({"code": nullable("integer"), "signal": nullable("integer"),
            "reason": {"type": "string", "enum": ["exited", "signalled", "time_limit", "oom", "pids_limit",
                "budget_exceeded", "cancelled", "spawn_failed"]}}),
        ),
    );
    add(
        "Run",
        object(
            &[
                "id",
                "session_id",
                "goal",
                "state",
                "agent",
                "profile",
                "budget",
                "budget_policy",
                "usage",
                "created_at",
            ],
            json!({
                "id": string(), "session_id": string(), "goal": string(), "state": states,
                "state_reason": nullable("string"), "agent": reference("AgentSpec"), "profile": string(),
                "profile_hash": nullable("string"), "budget": reference("Budget"),
                "budget_policy": {"type": "string", "enum": ["hard_stop", "pause_approval"]},
                "usage": reference("Usage"), "budget_window_started_at": nullable("string"),
                "completion_predicate": string(), "current_step_id": nullable("string"),
                "exit": {"oneOf": [reference("RunExit"), {"type": "null"}]},
                "created_at": string(), "updated_at": string(), "started_at": nullable("string"),
                "ended_at": nullable("string"), "metadata": {"type": "object"},
                "capabilities": {"type": ["array", "null"], "items": string()},
            }),
        ),
    );
    add("RunList", object(&["runs"], json!({"runs": array_of("Run")})));
    add(
        "AgentRequest",
        object(&["argv"], json!({"argv": {"type": "array", "items": string()}, "env": {"type": "object"}})),
    );
    add(
        "CreateRunRequest",
        object(
            &["session_id", "goal"],
            json!({"session_id": string(), "goal": string(), "agent": reference("AgentRequest"),
                   "profile": string(), "budget": reference("BudgetPatch"),
                   "budget_policy": {"type": "string", "enum": ["hard_stop", "pause_approval"]},
                   "completion_predicate": string(), "metadata": {"type": "object"}, "queue": {"type": "boolean"},
                   "capabilities": {"type": "array", "items": string()}}),
        ),
    );
    add(
        "TransitionRequest",
        object(&["state"], json!({"state": states, "reason": string(), "budget": reference("BudgetPatch")})),
    );
    add(
        "Transitioned",
        object(
            &["run_id", "previous_state", "state"],
            json!({"run_id": string(), "previous_state": states, "state": states}),
        ),
    );
    add(
        "Action",
        object(
            &["seq", "step_id", "capability_id", "decision", "success", "at"],
            json!({"seq": {"type": "integer"}, "step_id": nullable("string"), "capability_id": nullable("string"),
                   "decision": nullable("string"), "success": {"type": "boolean"}, "at": string()}),
        ),
    );
    add("ActionList", object(&["run_id", "actions"], json!({"run_id": string(), "actions": array_of("Action")})));
    add(
        "Message",
        object(
            &["id", "direction", "sender", "text", "at"],
            json!({"id": string(), "direction": {"type": "string", "enum": ["in", "out"]}, "sender": string(),
                   "text": string(), "run_id": nullable("string"), "at": string()}),
        ),
    );
    add("MessageList", object(&["messages"], json!({"messages": array_of("Message")})));
    add("InboundMessage", object(&["text"], json!({"text": string(), "sender": string()})));
    add("Ingested", object(&["message_id", "run_id"], json!({"message_id": string(), "run_id": nullable("string")})));
    add(
        "AuditEvent",
        object(
            &["seq", "at", "type", "actor", "detail", "prev_hash", "hash"],
            json!({"seq": {"type": "integer"}, "at": string(), "type": string(), "actor": string(),
                   "session_id": nullable("string"), "run_id": nullable("string"), "step_id": nullable("string"),
                   "decision": nullable("string"), "detail": {}, "prev_hash": string(), "hash": string()}),
        ),
    );
    add("AuditEventList", object(&["events"], json!({"events": array_of("AuditEvent")})));
    add(
        "Capability",
        object(
            &["id", "executor", "input_schema"],
            json!({"id": string(), "description": string(),
                   "executor": {"type": "string", "enum": ["builtin", "http", "command"]},
                   "input_schema": {"type": "object"}, "output_schema": {"type": ["object", "null"]},
                   "uses_secret": {"type": "boolean"}}),
        ),
    );
    add("SecretValue", object(&["value"], json!({"value": string()})));
    add("CapabilityList", object(&["capabilities"], json!({"capabilities": array_of("Capability")})));
    add(
        "Verification",
        object(
            &["ok", "events", "head_hash", "first_bad_seq"],
            json!({"ok": {"type": "boolean"}, "events": {"type": "integer"}, "head_hash": string(),
                   "first_bad_seq": nullable("integer")}),
        ),
    );
    add("Info", json!({"type": "object", "required": ["version", "api_version", "cgroup_version"]}));
    s
}

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": string()}))
        .collect();
    parameters.extend(route.query.iter().map(|name| json!({"name": name, "in": "query", "schema": string()})));
    let mut responses = Map::new();
    let (status, schema) = route.success;
    let content = match schema {
        Some(name) => json!({"application/json": {"schema": reference(name)}}),
        None => json!({ route.content_type: {} }),
    };
    responses.insert(status.to_string(), json!({"description": "success", "content": content}));
    for code in [400, 403, 405, 413, 500].iter().chain(route.errors) {
        let reason = StatusCode::from_u16(*code).ok().and_then(|s| s.canonical_reason()).unwrap_or("error");
        responses.insert(
            code.to_string(),
            json!({"description": reason, "content": {"application/json": {"schema": reference("Error")}}}),
        );
    }
    let mut op = json!({
        "operationId": format!("{:?}", route.handler),
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(request) = route.request {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": reference(request)}}});
    }
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths.entry(route.path).or_insert_with(|| json!({}));
        item[route.method.to_ascii_lowercase()] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "ccos-supervisor admin API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas()},
    })
}

pub fn serve() -> Response {
    json_response(StatusCode::OK, &document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::audit::{NewAuditEvent, Verification};
    use crate::model::{
        Actor, AgentRequest, AgentSpec, Budget, BudgetPatch, CreateRunRequest, Direction, ExitReason, Message,
        RunDefaults, RunExit, Timestamp, Usage,
    };
    use crate::store::Store;

    /// The schema's properties are exactly the value's keys; nested objects
    /// behind a `$ref` are checked the same way.
    fn check(name: &str, value: &Value) {
        let all = schemas();
        let schema = all.get(name).unwrap_or_else(|| panic!("no schema {name}"));
        let props = schema["properties"].as_object().unwrap_or_else(|| panic!("{name}: no properties"));
        let object = value.as_object().unwrap_or_else(|| panic!("{name}: not an object: {value}"));
        let keys: BTreeSet<&String> = object.keys().collect();
        let fields: BTreeSet<&String> = props.keys().collect();
        assert_eq!(keys, fields, "{name}: the type's fields and its schema's differ");
        for (key, v) in object {
            let target = props[key]["$ref"].as_str().or_else(|| props[key]["oneOf"][0]["$ref"].as_str());
            if let (Some(target), true) = (target, v.is_object()) {
                check(target.rsplit('/').next().unwrap(), v);
            }
        }
        for required in schema["required"].as_array().unwrap() {
            assert!(props.contains_key(required.as_str().unwrap()), "{name}: required {required} not a property");
        }
    }

    #[test]
    fn every_serialized_field_is_in_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let request = CreateRunRequest {
            session_id: "s".into(),
            goal: "g".into(),
            agent: Some(AgentRequest { argv: vec!["a".into()], env: [("K".to_owned(), "V".to_owned())].into() }),
            profile: Some("default".into()),
            budget: Some(BudgetPatch {
                max_steps: Some(Some(1)),
                max_duration_secs: Some(None),
                max_cpu_secs: Some(None),
                max_memory_bytes: Some(None),
                max_pids: Some(None),
                max_tokens: Some(None),
            }),
            budget_policy: None,
            completion_predicate: Some("always".into()),
            metadata: Some(Default::default()),
            queue: Some(true),
            capabilities: Some(vec!["chat.send".into()]),
        };
        let mut full = serde_json::to_value(&request).unwrap();
        full["budget_policy"] = json!("hard_stop");
        check("CreateRunRequest", &full);
        let new = request.resolve(&RunDefaults::default()).unwrap();
        let run = store.create_run(&new, &Actor::System).unwrap();
        check("Run", &serde_json::to_value(&run).unwrap());
        check("RunList", &json!({ "runs": [] }));
        let exit = RunExit { code: Some(0), signal: None, reason: ExitReason::Exited };
        check("RunExit", &serde_json::to_value(exit).unwrap());
        check("Budget", &serde_json::to_value(Budget::default()).unwrap());
        check("Usage", &serde_json::to_value(Usage::default()).unwrap());
        check("AgentSpec", &serde_json::to_value(AgentSpec::default()).unwrap());
        let event = NewAuditEvent::new("run.create", &Actor::System).run("s", "r").step("x").decision("allow");
        check("AuditEvent", &serde_json::to_value(event.seal(1, Timestamp::now(), "0")).unwrap());
        let message = Message {
            id: "m".into(),
            direction: Direction::In,
            sender: "u".into(),
            text: "t".into(),
            run_id: Some("r".into()),
            at: Timestamp::now(),
        };
        check("Message", &serde_json::to_value(message).unwrap());
        let verification = Verification { ok: true, events: 0, head_hash: "h".into(), first_bad_seq: None };
        check("Verification", &serde_json::to_value(verification).unwrap());
    }

    #[test]
    fn the_document_lists_every_route() {
        let doc: Value = serde_json::from_slice(&serde_json::to_vec(&document()).unwrap()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for route in ROUTES {
            let op = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing", route.method, route.path);
            for name in route.request.iter().chain(route.success.1.iter()) {
                assert!(schemas.contains_key(*name), "{} {}: no schema {name}", route.method, route.path);
            }
            assert!(super::super::routes::matches(route.path, &route.path.replace("{id}", "x")).is_some());
        }
        let operations: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(operations, ROUTES.len());
    }
}
