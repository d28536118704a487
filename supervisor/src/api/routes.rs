//! The route table: one static list that both dispatch ([`super::route`])
//! and the OpenAPI document ([`super::openapi`]) read.

use hyper::Method;

/// Which handler serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Ping,
    Info,
    ListRuns,
    CreateRun,
    GetRun,
    CancelRun,
    TransitionRun,
    RunActions,
    RunLogs,
    WaitRun,
    ListMessages,
    PostMessage,
    ListAudit,
    VerifyAudit,
    Events,
    OpenApi,
    Metrics,
    Capabilities,
    ListSecrets,
    SetSecret,
    DeleteSecret,
}

/// One route: `path` segments are literals or `{name}` (a non-empty segment).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: Handler,
    pub summary: &'static str,
    /// The query parameters it accepts (others: 400 naming them).
    pub query: &'static [&'static str],
    /// The schema (in `components.schemas`) of its JSON request body.
    pub request: Option<&'static str>,
    /// Its success status, and the schema of that answer (None: not JSON).
    pub success: (u16, Option<&'static str>),
    /// The error statuses it may answer besides 400/403/405/413/500.
    pub errors: &'static [u16],
    /// The media type of a non-JSON success answer.
    pub content_type: &'static str,
}

const JSON: &str = "application/json";

/// One row of the table, positionally (so each row reads like API.md's).
#[allow(clippy::too_many_arguments)]
const fn route(
    method: &'static str,
    path: &'static str,
    handler: Handler,
    summary: &'static str,
    query: &'static [&'static str],
    request: Option<&'static str>,
    success: (u16, Option<&'static str>),
    errors: &'static [u16],
) -> Route {
    Route { method, path, handler, summary, query, request, success, errors, content_type: JSON }
}

const fn text(route: Route, content_type: &'static str) -> Route {
    Route { content_type, ..route }
}

use Handler::*;

pub static ROUTES: &[Route] = &[
    text(route("GET", "/_ping", Ping, "Liveness (header Api-Version: 1)", &[], None, (200, None), &[]), "text/plain"),
    route("GET", "/v1/info", Info, "Version, cgroup mode, limits in force", &[], None, (200, Some("Info")), &[]),
    route(
        "GET",
        "/v1/runs",
        ListRuns,
        "List runs, most recently created first",
        &["session_id", "state", "limit"],
        None,
        (200, Some("RunList")),
        &[],
    ),
    route(
        "POST",
        "/v1/runs",
        CreateRun,
        "Create and start a run",
        &[],
        Some("CreateRunRequest"),
        (201, Some("Run")),
        &[409],
    ),
    route("GET", "/v1/runs/{id}", GetRun, "One run", &[], None, (200, Some("Run")), &[404]),
    route(
        "POST",
        "/v1/runs/{id}/cancel",
        CancelRun,
        "Cancel a run (kills the jail); no body needed",
        &[],
        None,
        (200, Some("Transitioned")),
        &[404, 409],
    ),
    route(
        "POST",
        "/v1/runs/{id}/transition",
        TransitionRun,
        "Move a run to another state",
        &[],
        Some("TransitionRequest"),
        (200, Some("Transitioned")),
        &[404, 409],
    ),
    route(
        "GET",
        "/v1/runs/{id}/actions",
        RunActions,
        "The run's capability calls, latest first",
        &["limit"],
        None,
        (200, Some("ActionList")),
        &[404],
    ),
    text(
        route(
            "GET",
            "/v1/runs/{id}/logs",
            RunLogs,
            "The agent's captured output (chunked while following)",
            &["stream", "follow"],
            None,
            (200, None),
            &[404],
        ),
        "text/plain",
    ),
    route(
        "GET",
        "/v1/runs/{id}/wait",
        WaitRun,
        "Answers when the run is terminal, or at the timeout",
        &["timeout_secs"],
        None,
        (200, Some("Run")),
        &[404],
    ),
    route(
        "GET",
        "/v1/sessions/{id}/messages",
        ListMessages,
        "The session's messages, oldest first",
        &["direction"],
        None,
        (200, Some("MessageList")),
        &[],
    ),
    route(
        "POST",
        "/v1/sessions/{id}/messages",
        PostMessage,
        "An inbound message",
        &[],
        Some("InboundMessage"),
        (202, Some("Ingested")),
        &[404, 409],
    ),
    route(
        "GET",
        "/v1/audit",
        ListAudit,
        "Audit events, latest first",
        &["session_id", "run_id", "after_seq", "limit"],
        None,
        (200, Some("AuditEventList")),
        &[],
    ),
    route(
        "GET",
        "/v1/audit/verify",
        VerifyAudit,
        "Re-walk the hash chain",
        &[],
        None,
        (200, Some("Verification")),
        &[],
    ),
    text(
        route(
            "GET",
            "/v1/events",
            Events,
            "Audit events as NDJSON (one AuditEvent a line), held open",
            &["since_seq"],
            None,
            (200, None),
            &[],
        ),
        "application/x-ndjson",
    ),
    route(
        "GET",
        "/v1/capabilities",
        Capabilities,
        "What agents may call: ids, executors, schemas (never secrets)",
        &[],
        None,
        (200, Some("CapabilityList")),
        &[],
    ),
    route("GET", "/v1/secrets", ListSecrets, "The secret store's names (never values)", &[], None, (200, None), &[]),
    route(
        "PUT",
        "/v1/secrets/{id}",
        SetSecret,
        "Set a secret: {value}; it is redacted everywhere from now on",
        &[],
        Some("SecretValue"),
        (200, None),
        &[],
    ),
    route("DELETE", "/v1/secrets/{id}", DeleteSecret, "Delete a secret", &[], None, (200, None), &[404]),
    route("GET", "/v1/openapi.json", OpenApi, "This document", &[], None, (200, None), &[]),
    text(
        route("GET", "/metrics", Metrics, "Prometheus text format", &[], None, (200, None), &[]),
        "text/plain; version=0.0.4",
    ),
];

/// What the table says about a request's method and path.
pub enum Found {
    Route(&'static Route, Vec<String>),
    /// The path is known, not with this method: the methods it has.
    MethodNotAllowed(String),
    NotFound,
}

/// The path parameters if `path` matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let pattern: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if pattern.len() != path.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pattern.iter().zip(&path) {
        if p.starts_with('{') {
            if s.is_empty() {
                return None;
            }
            params.push((*s).to_owned());
        } else if p != s {
            return None;
        }
    }
    Some(params)
}

pub fn find(method: &Method, path: &str) -> Found {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    let mut allowed: Vec<&str> = Vec::new();
    for route in ROUTES {
        if let Some(params) = matches(route.path, path) {
            if route.method == method {
                return Found::Route(route, params);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Found::NotFound
    } else {
        Found::MethodNotAllowed(allowed.join(", "))
    }
}
