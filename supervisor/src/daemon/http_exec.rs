//! The executors that call out over HTTP, from the supervisor (never from
//! the jail, which has no network): `http` skills and the builtin
//! `llm.complete` (an OpenAI-compatible chat completions endpoint).
//!
//! A secret (bearer token, API key) is read from the secret store here and
//! put in the request's Authorization header only: it is in no answer to
//! the agent and no log line; the audit records `secret.use` with its name.
//! Redirects are not followed (a redirect could take the call, and its
//! token, to another host than the one the skill declares); answers are
//! read up to the declared size limit.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::Daemon;
use crate::audit::{types, NewAuditEvent};
use crate::capabilities::{HttpSpec, LlmSpec, StoreToken};
use crate::model::Actor;
use crate::store::Step;

/// One request, as the executors build it.
struct Call<'a> {
    method: &'a str,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    bearer: Option<String>,
    timeout: Duration,
    max_response_bytes: u64,
}

impl Daemon {
    /// An `http` skill's call: the URL from its template and the validated
    /// inputs; JSON inputs as the body of POST, PUT and PATCH.
    pub(super) async fn run_http(
        self: &Arc<Self>,
        step: &Step,
        spec: &HttpSpec,
        inputs: &Value,
    ) -> Result<Value, String> {
        let url = spec.url.render(inputs).map_err(|e| format!("building the URL: {e}"))?;
        let method = spec.method.as_str();
        let body = matches!(method, "POST" | "PUT" | "PATCH").then(|| inputs.clone());
        let bearer = self.use_secret(step, spec.bearer_secret.as_deref()).await?;
        let headers = spec.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let call = Call {
            method,
            url,
            headers,
            body,
            bearer,
            timeout: spec.timeout,
            max_response_bytes: spec.max_response_bytes,
        };
        let answer = send(call).await?;
        if let Some(store) = &spec.store_token {
            self.store_token(step, store, &answer).await?;
        }
        Ok(answer)
    }

    /// An opted-in skill's answer carries a token: it becomes secret
    /// `store.secret` (so the redactor hides it from here on, in this
    /// answer too), audited as `secret.store` with the name only.
    async fn store_token(self: &Arc<Self>, step: &Step, store: &StoreToken, answer: &Value) -> Result<(), String> {
        let Some(token) = answer.pointer(&store.pointer).and_then(Value::as_str).filter(|t| !t.is_empty()) else {
            return Err(format!("the answer has no token at {}", store.pointer));
        };
        self.put_secret(&store.secret, token).await?;
        let run = &step.run;
        let mut event = NewAuditEvent::new(types::SECRET_STORE, &Actor::Agent { run_id: run.id.clone() })
            .run(&run.session_id, &run.id)
            .with("name", store.secret.as_str());
        event.step_id = Some(step.step_id.clone());
        self.db(move |db| db.append_audit(event)).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// `llm.complete`: the messages to the configured model; the answer's
    /// text and `usage` (whose `total_tokens` count against the budget).
    pub(super) async fn run_llm(&self, step: &Step, spec: &LlmSpec, inputs: &Value) -> Result<Value, String> {
        let mut body = json!({"model": spec.model, "messages": inputs["messages"]});
        for field in ["max_tokens", "temperature"] {
            if let Some(v) = inputs.get(field) {
                body[field] = v.clone();
            }
        }
        let bearer = self.use_secret(step, spec.api_key_secret.as_deref()).await?;
        let call = Call {
            method: "POST",
            url: spec.endpoint.clone(),
            headers: Vec::new(),
            body: Some(body),
            bearer,
            timeout: spec.timeout,
            max_response_bytes: spec.max_response_bytes,
        };
        let answer = send(call).await?;
        let content = answer
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or("the model's answer has no choices[0].message.content")?;
        Ok(json!({"content": content, "usage": answer.get("usage").cloned().unwrap_or(Value::Null)}))
    }

    /// The value of secret `name` for this step, with `secret.use` (its
    /// name only) in the audit; `None` for no secret.
    async fn use_secret(&self, step: &Step, name: Option<&str>) -> Result<Option<String>, String> {
        let Some(name) = name else { return Ok(None) };
        let value = self.secret_value(name).ok_or_else(|| format!("the secret {name:?} is not in the store"))?;
        let run = &step.run;
        let mut event = NewAuditEvent::new(types::SECRET_USE, &Actor::Agent { run_id: run.id.clone() })
            .run(&run.session_id, &run.id)
            .with("name", name);
        event.step_id = Some(step.step_id.clone());
        self.db(move |store| store.append_audit(event)).await.map_err(|e| e.to_string())?;
        Ok(Some(value))
    }
}

/// Sends the call on the blocking pool; the answer's JSON, or an error
/// summary (status and the start of the body, never the request).
async fn send(call: Call<'_>) -> Result<Value, String> {
    let agent = ureq::AgentBuilder::new().timeout(call.timeout).redirects(0).build();
    let mut request = agent.request(call.method, &call.url);
    for (name, value) in &call.headers {
        request = request.set(name, value);
    }
    if let Some(token) = &call.bearer {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let body = call.body.clone();
    let max = call.max_response_bytes;
    let answer = tokio::task::spawn_blocking(move || {
        let sent = match body {
            Some(body) => request.set("Content-Type", "application/json").send_string(&body.to_string()),
            None => request.call(),
        };
        let response = match sent {
            Ok(response) => response,
            Err(ureq::Error::Status(code, response)) => {
                let text = read_limited(response, 512).unwrap_or_default();
                return Err(format!("HTTP {code}: {}", first_line(&text)));
            }
            Err(ureq::Error::Transport(t)) => return Err(format!("the request failed: {}", t.kind())),
        };
        let text = read_limited(response, max)?;
        serde_json::from_str::<Value>(&text).map_err(|e| format!("the answer is not JSON: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?;
    answer.map_err(|e| redact_url(&e, &call.url))
}

/// The body, refused past `max` bytes.
fn read_limited(response: ureq::Response, max: u64) -> Result<String, String> {
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the answer: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("the answer is over its limit of {max} bytes"));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(200).collect()
}

/// Errors never repeat the URL's query (it may carry inputs).
fn redact_url(message: &str, url: &str) -> String {
    match url.split_once('?') {
        Some((_, query)) if !query.is_empty() => message.replace(query, "…"),
        _ => message.to_owned(),
    }
}
