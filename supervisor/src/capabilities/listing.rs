//! `GET /v1/capabilities`: what is loaded, for operators and agents.
//!
//! Only what a caller needs to form a call: ids, descriptions, schemas and
//! the kind of executor. Not the URL, argv, headers or secret names: a
//! header may carry an API key of its own, and the shape of the host's
//! internal services is none of an agent's business. Whether a secret is
//! used is shown, as a yes or no.

use serde_json::{json, Value};

use super::{Executor, Registry};

pub fn listing(registry: &Registry) -> Value {
    let capabilities: Vec<Value> = registry
        .iter()
        .map(|c| {
            let uses_secret = match &c.executor {
                Executor::Http(spec) => spec.bearer_secret.is_some(),
                Executor::Llm(spec) => spec.api_key_secret.is_some(),
                Executor::Builtin(_) | Executor::Command(_) => false,
            };
            json!({
                "id": c.id,
                "description": c.description,
                "executor": c.executor.kind(),
                "input_schema": c.input_schema,
                "output_schema": c.output_schema,
                "uses_secret": uses_secret,
            })
        })
        .collect();
    json!({ "capabilities": capabilities })
}
