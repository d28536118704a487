//! What the http, command and llm executors are given: the resolved,
//! checked form of a skill file's `[executor]` (and per-operation
//! overrides). Pure data; the executors that act on it live elsewhere.
//!
//! Secrets appear here only by name; the value is looked up in the secret
//! store at call time and never enters a jail.

use std::collections::BTreeMap;
use std::time::Duration;

use super::url_template::UrlTemplate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn parse(s: &str) -> Option<HttpMethod> {
        Some(match s {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "PATCH" => HttpMethod::Patch,
            "DELETE" => HttpMethod::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// One http operation: a request built from validated inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSpec {
    pub method: HttpMethod,
    /// Fill with [`UrlTemplate::render`]; its placeholders are all required
    /// input fields (checked at load).
    pub url: UrlTemplate,
    pub headers: BTreeMap<String, String>,
    pub timeout: Duration,
    pub max_response_bytes: u64,
    /// The secret store name whose value is sent as `Authorization: Bearer`.
    pub bearer_secret: Option<String>,
    /// Opt-in: after a successful call, the string at `pointer` (a JSON
    /// pointer into the answer) is stored as secret `secret`, for reuse
    /// across calls and restarts; the agent sees it redacted.
    pub store_token: Option<StoreToken>,
}

/// Where a discovered token goes (see [`HttpSpec::store_token`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreToken {
    pub secret: String,
    pub pointer: String,
}

/// One command operation: argv run on the host in a jail of its own, the
/// inputs as JSON on stdin, a JSON answer on stdout, stderr for the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    /// A jail profile: a shipped name or a path to a `.toml` file.
    pub profile: String,
    pub time_limit: Duration,
    pub max_output_bytes: u64,
    /// Override the profile's cgroup limits when set.
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

/// The builtin `llm.complete`: an OpenAI-compatible chat completions call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmSpec {
    /// The full URL, e.g. `https://api.openai.com/v1/chat/completions`.
    pub endpoint: String,
    pub model: String,
    /// The secret store name of the API key (none for a local model).
    pub api_key_secret: Option<String>,
    pub timeout: Duration,
    pub max_response_bytes: u64,
}
