//! `POST /v1/runs`: the request as it arrives ([`CreateRunRequest`]: unknown
//! fields refused, absent told apart from `null`), the daemon's defaults
//! ([`RunDefaults`]), and the resolved, validated [`NewRun`] the store takes.
//! Resolving is pure, so every rule of the request is tested without a
//! database.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{AgentSpec, Budget, BudgetPolicy};
use crate::lifecycle::CompletionPredicate;

/// The body of `POST /v1/runs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRunRequest {
    pub session_id: String,
    pub goal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_policy: Option<BudgetPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_predicate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<bool>,
    /// An allowlist of capability ids; absent: every capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

/// `agent` in a request: `argv` is required, `env` optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRequest {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A budget in a request, to be merged over a base budget
/// ([`Budget::merged`]). Each field has three cases, which is why it is an
/// `Option<Option<_>>`: absent (`None`: keep the base value), `null`
/// (`Some(None)`: unlimited), or a number (`Some(Some(n))`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetPatch {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub max_duration_secs: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub max_cpu_secs: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub max_pids: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<Option<u64>>,
}

// serde calls this only for a field that is present, so wrapping the inner
// `Option` (which is `None` for `null`) in `Some` marks "present"; an absent
// field takes `#[serde(default)]`, i.e. `None`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(deserializer).map(Some)
}

/// What a request leaves out: the daemon's configured defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDefaults {
    pub agent: AgentSpec,
    pub profile: String,
    pub budget: Budget,
    pub budget_policy: BudgetPolicy,
}

impl Default for RunDefaults {
    fn default() -> Self {
        RunDefaults {
            agent: AgentSpec::default(),
            profile: "default".to_owned(),
            budget: Budget::DEFAULT,
            budget_policy: BudgetPolicy::PauseApproval,
        }
    }
}

/// A validated run, ready for [`crate::store::Store::create_run`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub session_id: String,
    pub goal: String,
    pub agent: AgentSpec,
    pub profile: String,
    /// Set by the caller once it has compiled the profile, if it has.
    pub profile_hash: Option<String>,
    pub budget: Budget,
    pub budget_policy: BudgetPolicy,
    pub completion_predicate: CompletionPredicate,
    pub metadata: Map<String, Value>,
    /// Queue behind the session's active run instead of refusing.
    pub queue: bool,
    pub capabilities: Option<Vec<String>>,
}

/// A request that is well-formed JSON but says something invalid: 400
/// `bad_request`, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct RequestError {
    pub field: String,
    pub message: String,
}

impl RequestError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> RequestError {
        RequestError { field: field.into(), message: message.into() }
    }
}

/// Longest session id accepted.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// Session ids appear in URL paths (`/v1/sessions/{id}/messages`) and logs,
/// so they are limited to characters that need no escaping there.
pub fn validate_session_id(id: &str) -> Result<(), RequestError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@');
    if id.is_empty() || id.len() > MAX_SESSION_ID_LEN || !id.chars().all(ok_char) {
        return Err(RequestError::new(
            "session_id",
            format!("must be 1 to {MAX_SESSION_ID_LEN} characters of A-Z a-z 0-9 . _ - : @, got {id:?}"),
        ));
    }
    Ok(())
}

impl CreateRunRequest {
    /// Validates the request and fills in what it leaves out from `defaults`.
    pub fn resolve(self, defaults: &RunDefaults) -> Result<NewRun, RequestError> {
        validate_session_id(&self.session_id)?;
        if self.goal.trim().is_empty() {
            return Err(RequestError::new("goal", "must not be empty"));
        }
        let agent = match self.agent {
            Some(a) => validate_agent(AgentSpec { argv: a.argv, env: a.env })?,
            None => defaults.agent.clone(),
        };
        let profile = match self.profile {
            Some(p) => validate_profile_name(p)?,
            None => defaults.profile.clone(),
        };
        let completion_predicate = match self.completion_predicate {
            Some(p) => p.parse().map_err(|e| RequestError::new("completion_predicate", format!("{e}")))?,
            None => CompletionPredicate::Always,
        };
        Ok(NewRun {
            session_id: self.session_id,
            goal: self.goal,
            agent,
            profile,
            profile_hash: None,
            budget: self.budget.map_or(defaults.budget, |patch| defaults.budget.merged(&patch)),
            budget_policy: self.budget_policy.unwrap_or(defaults.budget_policy),
            completion_predicate,
            metadata: self.metadata.unwrap_or_default(),
            queue: self.queue.unwrap_or(false),
            capabilities: self.capabilities.map(validate_capability_ids).transpose()?,
        })
    }
}

// The argv and env end up in execve(2): NUL cannot be passed, and an env name
// with `=` would be split differently by the agent than it was written.
fn validate_agent(agent: AgentSpec) -> Result<AgentSpec, RequestError> {
    match agent.argv.first() {
        None => return Err(RequestError::new("agent.argv", "must name a program")),
        Some(p) if p.is_empty() => return Err(RequestError::new("agent.argv[0]", "must not be empty")),
        Some(_) => {}
    }
    if let Some(i) = agent.argv.iter().position(|a| a.contains('\0')) {
        return Err(RequestError::new(format!("agent.argv[{i}]"), "must not contain NUL"));
    }
    for (name, value) in &agent.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(RequestError::new("agent.env", format!("invalid variable name {name:?}")));
        }
        if value.contains('\0') {
            return Err(RequestError::new(format!("agent.env.{name}"), "must not contain NUL"));
        }
    }
    Ok(agent)
}

// Ids, not patterns: an allowlist says exactly what a run may call. Whether
// each is loaded is not checked here: a skill may come with the next reload.
fn validate_capability_ids(ids: Vec<String>) -> Result<Vec<String>, RequestError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    for (i, id) in ids.iter().enumerate() {
        if id.is_empty() || id.len() > 128 || !id.chars().all(ok_char) {
            return Err(RequestError::new(format!("capabilities[{i}]"), format!("not a capability id: {id:?}")));
        }
    }
    Ok(ids)
}

// A profile names a file under the policies directory: no path separators.
fn validate_profile_name(profile: String) -> Result<String, RequestError> {
    if !is_profile_name(&profile) {
        return Err(RequestError::new("profile", format!("not a profile name: {profile:?}")));
    }
    Ok(profile)
}

/// A profile name: letters, digits, `-`, `_` and `.`, not starting with a
/// dot, so it can never be a path (it names `<policies>/<name>.toml`).
pub fn is_profile_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    !name.is_empty() && !name.starts_with('.') && name.chars().all(ok_char)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<CreateRunRequest, serde_json::Error> {
        serde_json::from_value(v)
    }

    fn resolve(v: Value) -> Result<NewRun, RequestError> {
        parse(v).unwrap().resolve(&RunDefaults::default())
    }

    #[test]
    fn minimal_request_takes_every_default() {
        let run = resolve(json!({"session_id": "s1", "goal": "g"})).unwrap();
        let d = RunDefaults::default();
        assert_eq!(run.agent, d.agent);
        assert_eq!(run.profile, "default");
        assert_eq!(run.budget, Budget::DEFAULT);
        assert_eq!(run.budget_policy, BudgetPolicy::PauseApproval);
        assert_eq!(run.completion_predicate, CompletionPredicate::Always);
        assert_eq!(run.metadata, Map::new());
        assert!(!run.queue);
    }

    #[test]
    fn budget_merge_tells_absent_from_null_from_value() {
        let run = resolve(json!({"session_id": "s", "goal": "g",
            "budget": {"max_steps": 7, "max_memory_bytes": null, "max_tokens": 1000}}))
        .unwrap();
        assert_eq!(run.budget.max_steps, Some(7), "a value replaces the default");
        assert_eq!(run.budget.max_memory_bytes, None, "null means unlimited");
        assert_eq!(run.budget.max_tokens, Some(1000), "a value where the default is unlimited");
        assert_eq!(run.budget.max_duration_secs, Some(300), "absent keeps the default");
        assert_eq!(run.budget.max_pids, Some(64), "absent keeps the default");
        assert_eq!(run.budget.max_cpu_secs, None, "absent keeps an unlimited default");

        let empty = resolve(json!({"session_id": "s", "goal": "g", "budget": {}})).unwrap();
        assert_eq!(empty.budget, Budget::DEFAULT);
    }

    #[test]
    fn budget_patch_round_trips_its_three_cases() {
        let patch: BudgetPatch = serde_json::from_value(json!({"max_steps": null, "max_pids": 3})).unwrap();
        assert_eq!(patch.max_steps, Some(None));
        assert_eq!(patch.max_pids, Some(Some(3)));
        assert_eq!(patch.max_tokens, None);
        assert_eq!(serde_json::to_value(patch).unwrap(), json!({"max_steps": null, "max_pids": 3}));
    }

    #[test]
    fn unknown_fields_are_refused_and_named() {
        for (body, field) in [
            (json!({"session_id": "s", "goal": "g", "priority": 1}), "priority"),
            (json!({"session_id": "s", "goal": "g", "budget": {"max_step": 1}}), "max_step"),
            (json!({"session_id": "s", "goal": "g", "agent": {"argv": ["a"], "cwd": "/"}}), "cwd"),
        ] {
            let err = parse(body).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn wrong_types_are_refused() {
        assert!(parse(json!({"session_id": "s", "goal": "g", "budget": {"max_steps": -1}})).is_err());
        assert!(parse(json!({"session_id": "s", "goal": "g", "metadata": [1]})).is_err());
        assert!(parse(json!({"session_id": "s", "goal": "g", "budget_policy": "soft"})).is_err());
        assert!(parse(json!({"goal": "g"})).is_err());
    }

    #[test]
    fn invalid_values_name_the_field() {
        for (body, field) in [
            (json!({"session_id": "", "goal": "g"}), "session_id"),
            (json!({"session_id": "a/b", "goal": "g"}), "session_id"),
            (json!({"session_id": "s", "goal": "  "}), "goal"),
            (json!({"session_id": "s", "goal": "g", "agent": {"argv": []}}), "agent.argv"),
            (json!({"session_id": "s", "goal": "g", "agent": {"argv": [""]}}), "agent.argv[0]"),
            (json!({"session_id": "s", "goal": "g", "agent": {"argv": ["a", "b\u{0}"]}}), "agent.argv[1]"),
            (json!({"session_id": "s", "goal": "g", "agent": {"argv": ["a"], "env": {"A=B": "c"}}}), "agent.env"),
            (json!({"session_id": "s", "goal": "g", "profile": "../etc/x"}), "profile"),
            (json!({"session_id": "s", "goal": "g", "completion_predicate": "sometimes"}), "completion_predicate"),
        ] {
            assert_eq!(resolve(body.clone()).unwrap_err().field, field, "{body}");
        }
    }

    #[test]
    fn given_fields_are_kept() {
        let run = resolve(json!({"session_id": "chat:42", "goal": "g", "agent": {"argv": ["/bin/true"]},
            "profile": "strict", "budget_policy": "hard_stop", "completion_predicate": "capability_succeeded:mail.send",
            "metadata": {"k": [1, 2]}, "queue": true}))
        .unwrap();
        assert_eq!(run.agent.argv, ["/bin/true"]);
        assert_eq!(run.profile, "strict");
        assert_eq!(run.budget_policy, BudgetPolicy::HardStop);
        assert_eq!(run.completion_predicate, CompletionPredicate::CapabilitySucceeded("mail.send".into()));
        assert_eq!(run.metadata["k"], json!([1, 2]));
        assert!(run.queue);
    }
}
