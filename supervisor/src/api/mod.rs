//! The admin API: HTTP/1.1 (hyper) over the Unix socket, one task per
//! connection. Each connection's peer is checked once (SO_PEERCRED): root
//! and members of group `ccos` are served, anyone else gets 403 `forbidden`
//! on every request. Routes are API.md's table, written once in [`routes::ROUTES`] (which the OpenAPI document is built from); an unknown path is 404
//! `not_found`, a known path with another method 405 `method_not_allowed`.

pub mod agent;
mod audit;
pub mod body;
pub mod error;
mod events;
pub mod metrics;
pub mod openapi;
pub mod routes;
mod runs;
mod secrets;
mod sessions;
mod system;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use tokio::net::{UnixListener, UnixStream};

use self::body::Response;
use self::error::ApiError;
use self::routes::{Found, Handler, Route};
use crate::daemon::Daemon;
use crate::model::Actor;

pub use system::API_VERSION;

/// The group whose members may use the admin API (besides root).
pub const ADMIN_GROUP: &str = "ccos";
/// A client must send its request head within this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub allowed: bool,
}

/// The peer's credentials and whether it may use the API: uid 0, or group
/// `ccos` as its primary group or one of its supplementary groups (read
/// from /proc/<pid>/status, as the kernel has them now).
pub fn peer_of(stream: &std::os::unix::net::UnixStream) -> std::io::Result<Peer> {
    let cred = getsockopt(stream, PeerCredentials)?;
    let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
    let allowed = uid == 0 || admin_gid().is_some_and(|ccos| gid == ccos || supplementary_groups(pid).contains(&ccos));
    Ok(Peer { uid, gid, pid, allowed })
}

fn admin_gid() -> Option<u32> {
    nix::unistd::Group::from_name(ADMIN_GROUP).ok().flatten().map(|g| g.gid.as_raw())
}

fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        })
        .unwrap_or_default()
}

/// Accepts connections until `shutdown` resolves; each is served by its
/// own task. Connections in flight are left to finish on their own.
pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    // EMFILE and friends: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            // Group lookups may go through NSS (files, sssd, LDAP): off the
            // runtime's threads.
            let std_stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    return;
                }
            };
            let checked =
                tokio::task::spawn_blocking(move || peer_of(&std_stream).map(|peer| (peer, std_stream))).await;
            let (peer, stream) = match checked {
                Ok(Ok((peer, std_stream))) => match UnixStream::from_std(std_stream) {
                    Ok(stream) => (peer, stream),
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        return;
                    }
                },
                Ok(Err(e)) => {
                    tracing::warn!("SO_PEERCRED: {e}");
                    return;
                }
                Err(e) => {
                    tracing::warn!("SO_PEERCRED: {e}");
                    return;
                }
            };
            let service = service_fn(move |request| {
                let daemon = daemon.clone();
                async move { Ok::<_, Infallible>(handle(&daemon, peer, request).await) }
            });
            serve_connection(stream, service).await;
        });
    }
}

/// Serves HTTP/1.1 on one connection until the client closes it or stalls
/// past the header timeout. Used by the admin and the agent sockets alike.
pub(crate) async fn serve_connection<S>(stream: UnixStream, service: S)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        if !e.is_incomplete_message() && !e.is_timeout() {
            tracing::debug!("connection: {e}");
        }
    }
}

async fn handle(daemon: &Arc<Daemon>, peer: Peer, request: Request<Incoming>) -> Response {
    if !peer.allowed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("uid {} may not use the admin API: it is for root and group `{ADMIN_GROUP}`", peer.uid),
        )
        .into_response();
    }
    let actor = Actor::Admin { uid: peer.uid };
    let response = match route(daemon, request, actor).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    metrics::observe_request(response.status());
    response
}

/// Runs a request's change to its end in a task of its own (call it once
/// the request's body is read): hyper drops the request's future when the
/// client goes away, and a change dropped half way (a committed run without
/// its jail or run.start, a cancelled run whose jail lives on, an agent's
/// step taken but never finished nor audited) is worse than an answer
/// nobody reads.
pub(crate) async fn to_the_end<T: Send + 'static>(
    change: impl Future<Output = Result<T, crate::daemon::DaemonError>> + Send + 'static,
) -> Result<T, ApiError> {
    let done = tokio::spawn(change).await.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", format!("the request's task: {e}"))
    })?;
    Ok(done?)
}

fn method_not_allowed(allowed: String) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("this path accepts {allowed}"))
        .with("allow", allowed)
}

async fn route(daemon: &Arc<Daemon>, request: Request<Incoming>, actor: Actor) -> Result<Response, ApiError> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let result = match routes::find(request.method(), &path) {
        Found::Route(route, params) => dispatch(daemon, route, &params, query.as_deref(), request, actor).await,
        Found::MethodNotAllowed(allowed) => Err(method_not_allowed(allowed)),
        Found::NotFound => Err(ApiError::not_found(format!("no such path: {path}")).with("path", path.as_str())),
    };
    match result {
        Err(mut e) if e.status == StatusCode::METHOD_NOT_ALLOWED => {
            let allow = e.extra.remove("allow");
            let mut response = e.into_response();
            if let Some(allow) = allow.as_ref().and_then(|a| a.as_str()).and_then(|a| HeaderValue::from_str(a).ok()) {
                response.headers_mut().insert(ALLOW, allow);
            }
            Ok(response)
        }
        other => other,
    }
}

async fn dispatch(
    daemon: &Arc<Daemon>,
    route: &Route,
    params: &[String],
    query: Option<&str>,
    request: Request<Incoming>,
    actor: Actor,
) -> Result<Response, ApiError> {
    // The table's query names are the contract; handlers read their own.
    body::query_params(query, route.query)?;
    let id = params.first().map(String::as_str).unwrap_or_default();
    match route.handler {
        Handler::Ping => Ok(system::ping()),
        Handler::Info => Ok(system::info(daemon)),
        Handler::ListRuns => runs::list(daemon, query).await,
        Handler::CreateRun => runs::create(daemon, request, actor).await,
        Handler::GetRun => runs::get(daemon, id, query).await,
        Handler::CancelRun => runs::cancel(daemon, id, request, actor).await,
        Handler::TransitionRun => runs::transition(daemon, id, request, actor).await,
        Handler::RunActions => runs::actions(daemon, id, query).await,
        Handler::RunLogs => runs::logs(daemon, id, query).await,
        Handler::WaitRun => runs::wait(daemon, id, query).await,
        Handler::ListMessages => sessions::list_messages(daemon, id, query).await,
        Handler::PostMessage => sessions::post_message(daemon, id, request, actor).await,
        Handler::ListAudit => audit::list(daemon, query).await,
        Handler::VerifyAudit => audit::verify(daemon).await,
        Handler::Events => events::stream(daemon, query).await,
        Handler::OpenApi => Ok(openapi::serve()),
        Handler::Metrics => metrics::metrics(daemon).await,
        Handler::ListSecrets => Ok(secrets::list(daemon)),
        Handler::SetSecret => secrets::set(daemon, id, request, actor).await,
        Handler::DeleteSecret => secrets::delete(daemon, id, actor).await,
        Handler::Capabilities => {
            Ok(body::json_response(StatusCode::OK, &crate::capabilities::listing(&daemon.capabilities())))
        }
    }
}
