//! The capabilities an agent may call: the only way a jailed agent acts on
//! the world. Each has an id, an input JSON Schema and an executor.
//!
//! The registry is open: today it holds the supervisor's builtins
//! ([`builtin`]); declared skills (http and command executors, secrets)
//! are added to the same map by the capabilities loader.
//!
//! Validation is the gate's last check before a step is counted: a
//! missing required field is `missing_input` (with the fields, so an agent
//! can ask a person and pause), any other mismatch is `invalid_input`.

pub mod builtin;

use std::collections::BTreeMap;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

pub use builtin::Builtin;

/// How a capability is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    Builtin(Builtin),
}

/// One callable capability.
#[derive(Debug)]
pub struct Capability {
    pub id: String,
    pub description: String,
    pub input_schema: Value,
    pub executor: Executor,
    validator: jsonschema::Validator,
}

/// Why a call's inputs were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// Required fields that are absent (JSON pointer-free names, e.g. `text`).
    Missing(Vec<String>),
    /// Anything else: the first mismatch, where and why.
    Invalid { at: String, message: String },
}

impl Capability {
    /// A capability with a compiled input schema; an invalid schema is an
    /// error naming the capability.
    pub fn new(id: &str, description: &str, input_schema: Value, executor: Executor) -> Result<Capability, String> {
        let validator = jsonschema::validator_for(&input_schema)
            .map_err(|e| format!("capability {id}: invalid input schema: {e}"))?;
        Ok(Capability { id: id.to_owned(), description: description.to_owned(), input_schema, executor, validator })
    }

    /// Checks `inputs` against the input schema.
    pub fn validate(&self, inputs: &Value) -> Result<(), InputError> {
        let mut missing = Vec::new();
        let mut invalid = None;
        for error in self.validator.iter_errors(inputs) {
            match &error.kind {
                ValidationErrorKind::Required { property } => {
                    let name = property.as_str().map_or_else(|| property.to_string(), str::to_owned);
                    let at = error.instance_path.to_string();
                    missing.push(if at.is_empty() { name } else { format!("{}/{name}", at.trim_start_matches('/')) });
                }
                _ if invalid.is_none() => {
                    let at = error.instance_path.to_string();
                    invalid = Some(InputError::Invalid {
                        at: if at.is_empty() { "/".to_owned() } else { at },
                        message: error.to_string(),
                    });
                }
                _ => {}
            }
        }
        // A wrong type is worth reporting before asking a person for more.
        match (invalid, missing.is_empty()) {
            (Some(invalid), _) => Err(invalid),
            (None, false) => Err(InputError::Missing(missing)),
            (None, true) => Ok(()),
        }
    }
}

/// Every capability, by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    capabilities: BTreeMap<String, Arc<Capability>>,
}

impl Registry {
    /// The supervisor's own capabilities.
    pub fn builtins() -> Registry {
        let mut registry = Registry::default();
        for capability in builtin::all() {
            registry.capabilities.insert(capability.id.clone(), Arc::new(capability));
        }
        registry
    }

    pub fn get(&self, id: &str) -> Option<Arc<Capability>> {
        self.capabilities.get(id).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Capability>> {
        self.capabilities.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_fields_are_named_and_wrong_types_are_invalid() {
        let registry = Registry::builtins();
        let note = registry.get("run.note").unwrap();
        assert_eq!(note.validate(&json!({"text": "hello"})), Ok(()));
        assert_eq!(note.validate(&json!({})), Err(InputError::Missing(vec!["text".into()])));
        match note.validate(&json!({"text": 5})) {
            Err(InputError::Invalid { at, message }) => {
                assert_eq!(at, "/text");
                assert!(message.contains("string"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(note.validate(&json!({"text": "x", "extra": 1})), Err(InputError::Invalid { .. })));
        assert!(matches!(note.validate(&json!("text")), Err(InputError::Invalid { .. })));
        assert!(registry.get("no.such").is_none());
    }

    #[test]
    fn a_broken_schema_is_refused_by_name() {
        let err = Capability::new("x.y", "", json!({"type": 12}), Executor::Builtin(Builtin::RunNote)).unwrap_err();
        assert!(err.contains("x.y"), "{err}");
    }
}
