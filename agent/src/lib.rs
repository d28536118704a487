//! The agent side of ccos: what runs inside a run's jail.
//!
//! - The SDK ([`AgentClient`]): a small blocking client for the run's agent
//!   socket (`/run/ccos/agent.sock`, or `$CCOS_AGENT_SOCKET`), with typed
//!   answers and errors for each call of API.md's "Agent API". An agent
//!   written in Rust needs nothing else to read its run and inbox, execute
//!   capabilities and move its run.
//! - The reference agent's parts: [`runner`] (the loop that runs a goal to
//!   completion under the run's budget and predicate) and [`planner`] (what
//!   decides the next step: a fixed script, or a model through a capability).
//!
//! A separate crate from the supervisor on purpose: it is what goes into the
//! jail, so it has no async runtime, no HTTP stack and no way to the network;
//! the socket is a Unix socket and the HTTP it speaks is in `transport`.
//!
//! ```no_run
//! use ccos_agent::{AgentClient, RunState};
//! let agent = AgentClient::from_env();
//! for message in agent.inbox(20)? {
//!     eprintln!("{}: {}", message.sender, message.text);
//! }
//! agent.execute("run.note", serde_json::json!({"text": "hello"}))?;
//! agent.transition(RunState::Done, None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// One line on stderr, prefixed so it stands out in the run's captured logs.
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("ccos-agent: {}", format_args!($($arg)*))
    };
}

pub mod budget;
pub mod client;
pub mod error;
pub mod planner;
pub mod runner;
pub mod transport;
pub mod types;

pub use client::{AgentApi, AgentClient, DEFAULT_SOCKET, SOCKET_ENV};
pub use error::{ErrorDetail, ExecuteError, ProtocolError, RequestError, TransitionError};
pub use transport::TransportError;
pub use types::{
    Budget, BudgetPolicy, CompletionPredicate, ExecuteOk, InboxMessage, Remaining, RunState, RunView, TransitionOk,
    Usage,
};
