//! The SDK's errors, one enum per kind of call, each built from the
//! supervisor's answer. The supervisor's `error.code` is the stable key: a code
//! this SDK knows becomes its own variant, one it does not know is kept whole,
//! so a newer supervisor never turns into a confusing "protocol error".

use serde::Deserialize;

use crate::transport::TransportError;

/// The `error` object of an error answer. The agent API's execute answers
/// wrap it as `{"success": false, "error": {...}}`, everything else as
/// `{"error": {...}}`; both read the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// The input fields a `missing_input` answer names.
    #[serde(default)]
    pub missing: Vec<String>,
}

impl ErrorDetail {
    /// The error object of `body`, if it has one.
    pub(crate) fn from_body(body: &[u8]) -> Option<ErrorDetail> {
        #[derive(Deserialize)]
        struct Envelope {
            error: ErrorDetail,
        }
        serde_json::from_slice::<Envelope>(body).ok().map(|e| e.error)
    }
}

/// An answer that is HTTP but not what the agent API promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected answer to {request} (HTTP {status}): {detail}")]
pub struct ProtocolError {
    /// `GET /v1/agent/run`, ...
    pub request: String,
    pub status: u16,
    /// What was wrong, with the start of the body.
    pub detail: String,
}

impl ProtocolError {
    pub(crate) fn new(request: &str, status: u16, what: impl std::fmt::Display, body: &[u8]) -> ProtocolError {
        const SHOWN: usize = 200;
        let text = String::from_utf8_lossy(&body[..body.len().min(SHOWN)]);
        let more = if body.len() > SHOWN { "..." } else { "" };
        ProtocolError { request: request.to_owned(), status, detail: format!("{what}; body: {text:?}{more}") }
    }
}

/// Why `run()` or `inbox()` failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The supervisor answered with an error.
    #[error("{request} refused (HTTP {status} {code}): {message}")]
    Api { request: String, status: u16, code: String, message: String },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl RequestError {
    /// A timeout: for a long-poll, simply "nothing yet".
    pub fn is_timeout(&self) -> bool {
        matches!(self, RequestError::Transport(TransportError::Timeout { .. }))
    }
}

/// Why `execute()` did not run a capability, or the capability failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// 409: the run is paused or over; the step was refused and not counted.
    #[error("the run is not active, so `{capability_id}` was refused: {message}")]
    RunNotActive { capability_id: String, message: String },
    /// 409: the run's budget is used up; its budget policy has been applied.
    #[error("the run's budget is used up, so `{capability_id}` was refused: {message}")]
    BudgetExceeded { capability_id: String, message: String },
    /// 404: no capability of that id is loaded.
    #[error(
        "unknown capability `{capability_id}`: {message} (check the id against the supervisor's capability files)"
    )]
    UnknownCapability { capability_id: String, message: String },
    /// 403: the capability exists but this run may not use it.
    #[error("capability `{capability_id}` is not allowed for this run: {message}")]
    CapabilityNotAllowed { capability_id: String, message: String },
    /// 422: the inputs do not match the capability's input schema.
    #[error("invalid inputs for `{capability_id}`: {message}")]
    InvalidInput { capability_id: String, message: String },
    /// 422: required inputs are missing; someone has to supply them.
    #[error("`{capability_id}` needs inputs that were not given: {} ({message})", missing.join(", "))]
    MissingInput { capability_id: String, missing: Vec<String>, message: String },
    /// 502: the capability ran and failed (its HTTP endpoint or command).
    #[error("capability `{capability_id}` failed: {message}")]
    CapabilityFailed { capability_id: String, message: String },
    /// An error code this SDK does not know.
    #[error("`{capability_id}` refused (HTTP {status} {code}): {message}")]
    Other { capability_id: String, status: u16, code: String, message: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl ExecuteError {
    /// The typed error for an error answer's `error` object.
    pub(crate) fn from_detail(capability_id: &str, status: u16, detail: ErrorDetail) -> ExecuteError {
        let capability_id = capability_id.to_owned();
        let ErrorDetail { code, message, missing } = detail;
        match code.as_str() {
            "run_not_active" => ExecuteError::RunNotActive { capability_id, message },
            "budget_exceeded" => ExecuteError::BudgetExceeded { capability_id, message },
            "unknown_capability" => ExecuteError::UnknownCapability { capability_id, message },
            "capability_not_allowed" => ExecuteError::CapabilityNotAllowed { capability_id, message },
            "invalid_input" => ExecuteError::InvalidInput { capability_id, message },
            "missing_input" => ExecuteError::MissingInput { capability_id, missing, message },
            "capability_failed" => ExecuteError::CapabilityFailed { capability_id, message },
            _ => ExecuteError::Other { capability_id, status, code, message },
        }
    }

    /// The supervisor's error code, or `transport` / `protocol`: short enough
    /// for a run's `state_reason`.
    pub fn code(&self) -> &str {
        match self {
            ExecuteError::RunNotActive { .. } => "run_not_active",
            ExecuteError::BudgetExceeded { .. } => "budget_exceeded",
            ExecuteError::UnknownCapability { .. } => "unknown_capability",
            ExecuteError::CapabilityNotAllowed { .. } => "capability_not_allowed",
            ExecuteError::InvalidInput { .. } => "invalid_input",
            ExecuteError::MissingInput { .. } => "missing_input",
            ExecuteError::CapabilityFailed { .. } => "capability_failed",
            ExecuteError::Other { code, .. } => code,
            ExecuteError::Transport(_) => "transport",
            ExecuteError::Protocol(_) => "protocol",
        }
    }

    /// The run is paused or over: wait and look, rather than blame the step.
    pub fn is_refused_for_run_state(&self) -> bool {
        matches!(self, ExecuteError::RunNotActive { .. } | ExecuteError::BudgetExceeded { .. })
    }

    /// The supervisor could not be talked to, or answered outside the contract.
    pub fn is_transport_or_protocol(&self) -> bool {
        matches!(self, ExecuteError::Transport(_) | ExecuteError::Protocol(_))
    }
}

/// Why `transition()` was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// 409: not allowed from the run's current state (e.g. it is already terminal).
    #[error("the supervisor refused the transition: {message}")]
    InvalidTransition { message: String },
    /// 409: the completion predicate refuses `done`.
    #[error("the run's completion predicate refuses `done`: {message}")]
    PredicateUnsatisfied { message: String },
    /// 400: the request itself is wrong (unknown state, unknown field).
    #[error("bad transition request ({code}): {message}")]
    BadRequest { code: String, message: String },
    /// Any other error answer.
    #[error("transition refused (HTTP {status} {code}): {message}")]
    Other { status: u16, code: String, message: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl TransitionError {
    pub(crate) fn from_detail(status: u16, detail: ErrorDetail) -> TransitionError {
        let ErrorDetail { code, message, .. } = detail;
        match (status, code.as_str()) {
            (_, "invalid_transition") => TransitionError::InvalidTransition { message },
            (_, "predicate_unsatisfied") => TransitionError::PredicateUnsatisfied { message },
            (400, _) => TransitionError::BadRequest { code, message },
            _ => TransitionError::Other { status, code, message },
        }
    }

    pub fn is_transport_or_protocol(&self) -> bool {
        matches!(self, TransitionError::Transport(_) | TransitionError::Protocol(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_error_envelopes() {
        let d = ErrorDetail::from_body(
            br#"{"success": false, "error": {"code": "missing_input", "message": "m", "missing": ["to"]}}"#,
        );
        assert_eq!(
            d,
            Some(ErrorDetail { code: "missing_input".into(), message: "m".into(), missing: vec!["to".into()] })
        );
        let d = ErrorDetail::from_body(br#"{"error": {"code": "invalid_transition", "message": "m", "run_id": "r"}}"#);
        assert_eq!(d.map(|d| d.code), Some("invalid_transition".into()));
        assert_eq!(ErrorDetail::from_body(b"<html>502</html>"), None);
    }

    #[test]
    fn messages_name_the_capability_and_what_is_missing() {
        let e = ExecuteError::from_detail(
            "mail.send",
            422,
            ErrorDetail {
                code: "missing_input".into(),
                message: "required".into(),
                missing: vec!["to".into(), "subject".into()],
            },
        );
        assert_eq!(e.to_string(), "`mail.send` needs inputs that were not given: to, subject (required)");
        assert_eq!(e.code(), "missing_input");
        let e = ExecuteError::from_detail(
            "x",
            418,
            ErrorDetail { code: "teapot".into(), message: "no".into(), missing: vec![] },
        );
        assert_eq!(e.to_string(), "`x` refused (HTTP 418 teapot): no");
        assert_eq!(e.code(), "teapot");
    }

    #[test]
    fn protocol_errors_show_the_start_of_the_body() {
        let e = ProtocolError::new("GET /v1/agent/run", 200, "not JSON", &[b'x'; 300]);
        let text = e.to_string();
        assert!(text.starts_with("unexpected answer to GET /v1/agent/run (HTTP 200): not JSON; body: \"xxx"), "{text}");
        assert!(text.ends_with("\"..."), "{text}");
    }
}
