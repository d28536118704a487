//! `GET /metrics`: counters kept in atomics (process-wide), rendered in the
//! Prometheus text format with the run gauges read from the store.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;

use super::body::{text_response, Response};
use super::error::ApiError;
use crate::daemon::Daemon;
use crate::lifecycle::RunState;

/// Upper bounds (seconds) of the spawn latency histogram's buckets.
pub const SPAWN_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0];

static SPAWNS: AtomicU64 = AtomicU64::new(0);
static SPAWN_MICROS: AtomicU64 = AtomicU64::new(0);
static SPAWN_BUCKET_COUNTS: [AtomicU64; SPAWN_BUCKETS.len()] = [const { AtomicU64::new(0) }; SPAWN_BUCKETS.len()];
static REQUESTS: Mutex<BTreeMap<u16, u64>> = Mutex::new(BTreeMap::new());

/// One spawn request to the spawner and how long it took.
pub fn observe_spawn(took: Duration) {
    SPAWNS.fetch_add(1, Ordering::Relaxed);
    SPAWN_MICROS.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    let secs = took.as_secs_f64();
    for (bound, count) in SPAWN_BUCKETS.iter().zip(&SPAWN_BUCKET_COUNTS) {
        if secs <= *bound {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One answered API request.
pub fn observe_request(status: StatusCode) {
    *REQUESTS.lock().unwrap_or_else(|p| p.into_inner()).entry(status.as_u16()).or_default() += 1;
}

/// The exposition text, given the number of runs per state.
pub fn render(runs: &[(String, u64)]) -> String {
    let mut out = String::new();
    out.push_str("# HELP ccos_runs Runs by state.\n# TYPE ccos_runs gauge\n");
    for state in RunState::ALL {
        let n = runs.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "ccos_runs{{state=\"{}\"}} {n}", state.as_str());
    }
    let spawns = SPAWNS.load(Ordering::Relaxed);
    out.push_str("# HELP ccos_spawns_total Jail spawn requests.\n# TYPE ccos_spawns_total counter\n");
    let _ = writeln!(out, "ccos_spawns_total {spawns}");
    out.push_str("# HELP ccos_spawn_seconds Spawn latency.\n# TYPE ccos_spawn_seconds histogram\n");
    for (bound, count) in SPAWN_BUCKETS.iter().zip(&SPAWN_BUCKET_COUNTS) {
        let _ = writeln!(out, "ccos_spawn_seconds_bucket{{le=\"{bound}\"}} {}", count.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "ccos_spawn_seconds_bucket{{le=\"+Inf\"}} {spawns}");
    let sum = SPAWN_MICROS.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "ccos_spawn_seconds_sum {sum}");
    let _ = writeln!(out, "ccos_spawn_seconds_count {spawns}");
    out.push_str("# HELP ccos_api_requests_total Admin API requests answered, by status.\n");
    out.push_str("# TYPE ccos_api_requests_total counter\n");
    for (status, n) in REQUESTS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(out, "ccos_api_requests_total{{status=\"{status}\"}} {n}");
    }
    out
}

pub async fn metrics(daemon: &Arc<Daemon>) -> Result<Response, ApiError> {
    let runs = daemon.db(|store| store.count_runs_by_state()).await?;
    let mut response = text_response(StatusCode::OK, render(&runs));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    Ok(response)
}
