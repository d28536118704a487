//! `GET /_ping` and `GET /v1/info`.

use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::StatusCode;
use serde_json::json;

use super::body::{json_response, text_response, Response, MAX_BODY};
use crate::daemon::Daemon;
use crate::store::{DEFAULT_LIMIT, MAX_LIMIT, SCHEMA_VERSION};

pub const API_VERSION: &str = "1";

pub fn ping() -> Response {
    let mut response = text_response(StatusCode::OK, "OK");
    response.headers_mut().insert("Api-Version", HeaderValue::from_static(API_VERSION));
    response
}

pub fn info(daemon: &Arc<Daemon>) -> Response {
    let defaults = daemon.defaults();
    json_response(
        StatusCode::OK,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "api_version": 1,
            "schema_version": SCHEMA_VERSION,
            "cgroup_version": daemon.cgroup_version(),
            "profiles": daemon.profiles(),
            "limits": {
                "max_body_bytes": MAX_BODY,
                "max_list_limit": MAX_LIMIT,
                "default_list_limit": DEFAULT_LIMIT,
            },
            "defaults": {
                "agent": defaults.agent,
                "profile": defaults.profile,
                "budget": defaults.budget,
                "budget_policy": defaults.budget_policy,
            },
        }),
    )
}
