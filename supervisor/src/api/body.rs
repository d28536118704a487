//! Request bodies (capped at [`MAX_BODY`], parsed strictly, errors naming
//! the field), query strings, and JSON / text responses.

use bytes::Bytes;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::body::{Body, Frame};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;

/// Bodies over this many bytes: 413 `payload_too_large`.
pub const MAX_BODY: usize = 1024 * 1024;

/// A client must send its whole body within this long.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Every answer: a whole body, or one streamed from a channel.
pub type Response = hyper::Response<BoxBody<Bytes, Infallible>>;

/// A body fed by a channel: each message is a chunk; the body ends when
/// every sender is gone. Dropped (client gone) -> the senders see it closed.
pub struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// A 200 whose body is streamed (chunked) from what is sent on the
/// returned sender.
pub fn streaming_response(content_type: &'static str) -> (Response, tokio::sync::mpsc::Sender<Bytes>) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut response = hyper::Response::new(ChannelBody(rx).boxed());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    (response, tx)
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is over {MAX_BODY} bytes"),
    )
    .with("max_bytes", MAX_BODY)
}

/// The whole body, refused early by its Content-Length and capped while
/// streaming (a chunked body has none).
pub async fn read_body(request: Request<Incoming>) -> Result<Bytes, ApiError> {
    if let Some(len) = request.headers().get(CONTENT_LENGTH) {
        let len = len.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok());
        match len {
            Some(n) if n > MAX_BODY as u64 => return Err(too_large()),
            Some(_) => {}
            None => {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "Content-Length is not a number"))
            }
        }
    }
    let collect = Limited::new(request.into_body(), MAX_BODY).collect();
    let Ok(collected) = tokio::time::timeout(BODY_READ_TIMEOUT, collect).await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body did not arrive within {BODY_READ_TIMEOUT:?}"),
        ));
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("reading the request body: {e}"))),
    }
}

/// Parses a JSON body into `T` (whose unknown fields serde refuses). Errors
/// are 400 `bad_request` naming the field: the path to a wrongly typed value
/// (`budget.max_steps`), or the unknown field itself.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the request body is empty; expected JSON"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(de);
    match parsed {
        Ok(value) => Ok(value),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("malformed JSON: {inner}")));
            }
            let message = if path == "." { inner.to_string() } else { format!("`{path}`: {inner}") };
            let err = ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
            Err(if path == "." { err } else { err.with("field", path) })
        }
    }
}

pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = hyper::Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A query string's `name=value` pairs, percent-decoded; refuses names not
/// in `allowed` (400 naming it) and repeated names.
pub fn query_params(query: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name).ok_or_else(|| ApiError::bad_field(name, "bad percent-encoding"))?;
        let value = percent_decode(value).ok_or_else(|| ApiError::bad_field(&name, "bad percent-encoding"))?;
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad_field(
                &name,
                format!("unknown query parameter `{name}`; expected one of: {}", allowed.join(", ")),
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::bad_field(&name, format!("query parameter `{name}` given twice")));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// The value of `name` among parsed query parameters.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A numeric query parameter, 400 naming it if it is not a number.
pub fn number_param<T: std::str::FromStr>(params: &[(String, String)], name: &str) -> Result<Option<T>, ApiError> {
    param(params, name)
        .map(|v| v.parse::<T>().map_err(|_| ApiError::bad_field(name, format!("`{name}` must be a number, got {v:?}"))))
        .transpose()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding_and_unknown_names() {
        let p = query_params(Some("session_id=a%3Ab&state=active"), &["session_id", "state"]).unwrap();
        assert_eq!(param(&p, "session_id"), Some("a:b"));
        assert_eq!(param(&p, "state"), Some("active"));
        let err = query_params(Some("stat=x"), &["state"]).unwrap_err();
        assert_eq!(err.extra["field"], "stat");
        assert!(query_params(Some("state=%zz"), &["state"]).is_err());
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u64,
        }
        let e = parse_json::<T>(br#"{"a": "x"}"#).unwrap_err();
        assert!(e.message.contains("`a`"), "{}", e.message);
        let e = parse_json::<T>(br#"{"a": 1, "zz": 2}"#).unwrap_err();
        assert!(e.message.contains("zz"), "{}", e.message);
        let e = parse_json::<T>(br#"{"a": "#).unwrap_err();
        assert!(e.message.contains("malformed"), "{}", e.message);
    }
}
