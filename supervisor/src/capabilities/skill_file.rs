//! A skill file as written (TOML, one skill per file): pure serde data, no
//! checks beyond shape. [`super::load`] turns it into capabilities.
//!
//! The executor table is kept as raw TOML here and read a second time once
//! its `type` is known, so each executor has its own exact set of fields and
//! a stray field (`argv` on an http skill) is named, not silently ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The top level of a skill file. Required fields are `Option` so that a
/// missing one is reported by the loader with its name, the same way as
/// every other rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillFile {
    pub id: Option<String>,
    #[serde(default)]
    pub description: String,
    pub executor: Option<toml::Table>,
    pub operations: Option<BTreeMap<String, OperationFile>>,
}

/// `[operations.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationFile {
    #[serde(default)]
    pub description: String,
    /// Required for http and command skills; a builtin has its own.
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
    /// http only: this operation's method, instead of the executor's.
    pub method: Option<String>,
    /// http only: this operation's URL template, instead of the executor's.
    pub url: Option<String>,
}

/// `[executor]` with `type = "http"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub method: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub timeout_secs: Option<u64>,
    pub max_response_bytes: Option<u64>,
    /// A name in the secret store, sent as `Authorization: Bearer <secret>`.
    pub bearer_secret: Option<String>,
    /// Opt-in: store a token the answer carries (a login's) as a secret.
    pub store_token: Option<StoreTokenFile>,
}

/// `store_token = { secret = "NAME", pointer = "/access_token" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTokenFile {
    pub secret: String,
    pub pointer: String,
}

/// `[executor]` with `type = "command"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub argv: Option<Vec<String>>,
    pub profile: Option<String>,
    pub time_limit_secs: Option<u64>,
    pub max_output_bytes: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

/// `[executor]` with `type = "builtin"`: the configuration of a builtin
/// that needs one. Today that is only `llm.complete` (its model endpoint).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinFile {
    #[serde(rename = "type")]
    pub kind: String,
    /// An OpenAI-compatible chat completions URL.
    pub endpoint: Option<String>,
    pub model: Option<String>,
    /// A name in the secret store, sent as the bearer token.
    pub api_key_secret: Option<String>,
    pub timeout_secs: Option<u64>,
    pub max_response_bytes: Option<u64>,
}
