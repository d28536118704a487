//! The capabilities an agent may call: the only way a jailed agent acts on
//! the world. Each has an id, an input JSON Schema and an executor.
//!
//! The registry holds the supervisor's builtins ([`builtin`]) and the
//! skills declared in the `--capabilities` directory ([`load`]: one TOML
//! file per skill, each operation a capability `<skill>.<operation>`).
//!
//! Validation is the gate's last check before a step is counted: a
//! missing required field is `missing_input` (with the fields, so an agent
//! can ask a person and pause), any other mismatch is `invalid_input`.

pub mod builtin;
pub mod listing;
pub mod load;
pub mod skill_file;
pub mod spec;
pub mod url_template;

use std::collections::BTreeMap;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

pub use builtin::Builtin;
pub use listing::listing;
pub use load::{load_dir, LoadError, Skill};
pub use spec::{CommandSpec, HttpMethod, HttpSpec, LlmSpec, StoreToken};

/// How a capability is carried out. Not `Copy`: the declared executors
/// share their (per-skill) spec through an `Arc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    Builtin(Builtin),
    /// An http request built from the inputs (a skill file).
    Http(Arc<HttpSpec>),
    /// A program in a jail of its own (a skill file).
    Command(Arc<CommandSpec>),
    /// The builtin `llm.complete`, with its endpoint (a builtin skill file).
    Llm(Arc<LlmSpec>),
}

impl Executor {
    /// `builtin`, `http` or `command`, as `GET /v1/capabilities` shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            Executor::Builtin(_) | Executor::Llm(_) => "builtin",
            Executor::Http(_) => "http",
            Executor::Command(_) => "command",
        }
    }
}

/// One callable capability.
#[derive(Debug)]
pub struct Capability {
    pub id: String,
    pub description: String,
    pub input_schema: Value,
    /// What a successful call must answer, when the skill says.
    pub output_schema: Option<Value>,
    pub executor: Executor,
    validator: jsonschema::Validator,
    output_validator: Option<jsonschema::Validator>,
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
        Ok(Capability {
            id: id.to_owned(),
            description: description.to_owned(),
            input_schema,
            output_schema: None,
            executor,
            validator,
            output_validator: None,
        })
    }

    /// The same capability with an output schema; an invalid schema is an
    /// error naming the capability.
    pub fn with_output_schema(mut self, schema: Value) -> Result<Capability, String> {
        let validator = jsonschema::validator_for(&schema)
            .map_err(|e| format!("capability {}: invalid output schema: {e}", self.id))?;
        self.output_schema = Some(schema);
        self.output_validator = Some(validator);
        Ok(self)
    }

    /// Checks an executor's answer against the output schema, if any: the
    /// first mismatch, where and why.
    pub fn validate_output(&self, output: &Value) -> Result<(), String> {
        match self.output_validator.as_ref().and_then(|v| v.iter_errors(output).next()) {
            Some(error) => {
                Err(format!("output does not match its schema at {:?}: {error}", error.instance_path.to_string()))
            }
            None => Ok(()),
        }
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

    /// The builtins and these skills' capabilities. A capability id that is
    /// already taken (by a builtin or another skill) is refused, naming the
    /// skill's file.
    pub fn with_skills(skills: Vec<Skill>) -> Result<Registry, LoadError> {
        let mut registry = Registry::builtins();
        for skill in skills {
            for capability in skill.capabilities {
                load::check_not_builtin(&capability, &skill.file)?;
                if registry.capabilities.contains_key(&capability.id) {
                    return Err(LoadError::file(
                        &skill.file,
                        "id",
                        format!("duplicate capability id {:?} (already registered)", capability.id),
                    ));
                }
                registry.capabilities.insert(capability.id.clone(), Arc::new(capability));
            }
        }
        Ok(registry)
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
