//! `GET /v1/events?since_seq=N`: audit events as NDJSON, held open. The
//! live receiver is subscribed before the backlog is read, and events are
//! skipped by `seq`, so none is lost or repeated between the two.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

use super::body::{number_param, query_params, streaming_response, Response};
use super::error::ApiError;
use crate::daemon::Daemon;
use crate::model::AuditEvent;
use crate::store::MAX_LIMIT;

pub async fn stream(daemon: &Arc<Daemon>, query: Option<&str>) -> Result<Response, ApiError> {
    let params = query_params(query, &["since_seq"])?;
    let since = number_param::<u64>(&params, "since_seq")?.unwrap_or(0);
    let live = daemon.subscribe_events();
    let (response, tx) = streaming_response("application/x-ndjson");
    let daemon = daemon.clone();
    tokio::spawn(async move { pump(&daemon, since, live, &tx).await });
    Ok(response)
}

/// Err: the client is gone (or the store failed): stop.
type Sent = Result<(), ()>;

async fn pump(daemon: &Arc<Daemon>, since: u64, mut live: broadcast::Receiver<AuditEvent>, tx: &mpsc::Sender<Bytes>) {
    let mut last = since;
    if backlog(daemon, &mut last, tx).await.is_err() {
        return;
    }
    loop {
        let got = tokio::select! {
            _ = tx.closed() => return,
            got = live.recv() => got,
        };
        let sent = match got {
            Ok(event) if event.seq > last => send(&mut last, event, tx).await,
            Ok(_) => Ok(()),
            // Fell behind the channel: the store has them all.
            Err(RecvError::Lagged(_)) => backlog(daemon, &mut last, tx).await,
            Err(RecvError::Closed) => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Everything stored after `last`, a page at a time.
async fn backlog(daemon: &Arc<Daemon>, last: &mut u64, tx: &mpsc::Sender<Bytes>) -> Sent {
    loop {
        let after = *last;
        let page = daemon.db(move |store| store.audit_after(after, MAX_LIMIT)).await.map_err(|e| {
            tracing::error!("/v1/events: {e}");
        })?;
        let full = page.len() == MAX_LIMIT as usize;
        for event in page {
            send(last, event, tx).await?;
        }
        if !full {
            return Ok(());
        }
    }
}

async fn send(last: &mut u64, event: AuditEvent, tx: &mpsc::Sender<Bytes>) -> Sent {
    *last = event.seq;
    let mut line = serde_json::to_vec(&event).map_err(drop)?;
    line.push(b'\n');
    tx.send(Bytes::from(line)).await.map_err(drop)
}
