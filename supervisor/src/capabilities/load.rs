//! The skills loader: `*.toml` files in the `--capabilities` directory, one
//! skill each, read at start and on SIGHUP.
//!
//! Loading fails fast: the first broken rule stops the whole load with the
//! file, the field and the reason, so a daemon never starts (or reloads) with
//! half a capabilities directory. The caller keeps its old registry on error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::skill_file::{BuiltinFile, CommandFile, HttpFile, OperationFile, SkillFile};
use super::spec::{CommandSpec, HttpMethod, HttpSpec, LlmSpec, StoreToken};
use super::url_template::UrlTemplate;
use super::{builtin, Capability, Executor};

const MIB: u64 = 1024 * 1024;
const MAX_RESPONSE_BYTES: u64 = 16 * MIB;
const MAX_HTTP_TIMEOUT_SECS: u64 = 120;
const MAX_COMMAND_TIME_SECS: u64 = 600;
const MAX_LLM_TIMEOUT_SECS: u64 = 600;
/// Headers the supervisor sets itself: a file must not override where the
/// request goes, how its body is framed, or carry a credential in clear.
const RESERVED_HEADERS: &[&str] = &["authorization", "host", "content-length", "transfer-encoding", "connection"];

/// Why a capabilities directory was refused. Display: `<file>: <field>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{dir}: reading the capabilities directory: {reason}")]
    Dir { dir: String, reason: String },
    #[error("{file}: {field}: {reason}")]
    File { file: String, field: String, reason: String },
}

impl LoadError {
    pub(super) fn file(file: &Path, field: &str, reason: impl Into<String>) -> LoadError {
        LoadError::File { file: file.display().to_string(), field: field.to_owned(), reason: reason.into() }
    }
}

/// One loaded skill: its capabilities are `<id>.<operation>`.
#[derive(Debug)]
pub struct Skill {
    pub id: String,
    pub description: String,
    pub file: PathBuf,
    pub capabilities: Vec<Capability>,
}

/// The `executor.store_token.secret` names of the files (unreadable or
/// malformed files have none here: their own parse reports them).
fn stored_secret_names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter_map(|text| text.parse::<toml::Table>().ok())
        .filter_map(|table| {
            let secret = table.get("executor")?.get("store_token")?.get("secret")?.as_str()?;
            Some(secret.to_owned())
        })
        .collect()
}

/// Every `*.toml` in `dir` (not recursive, in name order). `secret_exists`
/// answers whether the secret store holds a name, so that a reference to a
/// missing secret fails now rather than at the first call.
pub fn load_dir(dir: &Path, secret_exists: &dyn Fn(&str) -> bool) -> Result<Vec<Skill>, LoadError> {
    let dir_err = |reason: String| LoadError::Dir { dir: dir.display().to_string(), reason };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| dir_err(e.to_string()))? {
        let path = entry.map_err(|e| dir_err(e.to_string()))?.path();
        if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    // A secret that some skill of the folder stores from its answers (a
    // login's token) resolves for the others, though it may not exist yet:
    // their calls fail until it does.
    let stored = stored_secret_names(&files);
    let secret_exists = |name: &str| secret_exists(name) || stored.iter().any(|s| s == name);
    let secret_exists: &dyn Fn(&str) -> bool = &secret_exists;

    let mut skills: Vec<Skill> = Vec::new();
    let mut skill_ids: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut capability_ids: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| LoadError::file(&path, "(file)", e.to_string()))?;
        let skill = parse_skill(&text, &path, secret_exists)?;
        if let Some(other) = skill_ids.insert(skill.id.clone(), path.clone()) {
            return Err(LoadError::file(
                &path,
                "id",
                format!("duplicate skill id {:?} (also in {})", skill.id, other.display()),
            ));
        }
        for capability in &skill.capabilities {
            check_not_builtin(capability, &path)?;
            if let Some(other) = capability_ids.insert(capability.id.clone(), path.clone()) {
                return Err(LoadError::file(
                    &path,
                    "id",
                    format!("duplicate capability id {:?} (also in {})", capability.id, other.display()),
                ));
            }
        }
        skills.push(skill);
    }
    Ok(skills)
}

/// A skill may not take a builtin's id, except the `llm` builtin skill,
/// which is how `llm.complete` gets its endpoint.
pub(super) fn check_not_builtin(capability: &Capability, file: &Path) -> Result<(), LoadError> {
    let configures_llm = matches!(capability.executor, Executor::Llm(_)) && capability.id == builtin::LLM_COMPLETE;
    if builtin::IDS.contains(&capability.id.as_str()) && !configures_llm {
        return Err(LoadError::file(
            file,
            "id",
            format!("duplicate capability id {:?}: it is a builtin of the supervisor", capability.id),
        ));
    }
    Ok(())
}

/// One skill file's text; `file` names it in errors.
pub fn parse_skill(text: &str, file: &Path, secret_exists: &dyn Fn(&str) -> bool) -> Result<Skill, LoadError> {
    let err = |field: &str, reason: String| LoadError::file(file, field, reason);
    let parsed: SkillFile = from_toml(toml::Deserializer::new(text), Some(text), "", file)?;

    let id = parsed.id.ok_or_else(|| err("id", "missing: every skill needs an id".into()))?;
    if !is_name(&id) {
        return Err(err("id", format!("{id:?} is not a skill id (expected [a-z][a-z0-9_-]*)")));
    }
    let executor = parsed.executor.ok_or_else(|| {
        err("executor", "missing: every skill needs an [executor] (type = http, command or builtin)".into())
    })?;
    let operations = parsed.operations.unwrap_or_default();
    if operations.is_empty() {
        return Err(err("operations", "no operations: a skill needs at least one [operations.<name>]".into()));
    }
    for name in operations.keys() {
        if !is_name(name) {
            return Err(err(&format!("operations.{name}"), "not an operation name (expected [a-z][a-z0-9_-]*)".into()));
        }
    }

    let kind = match executor.get("type") {
        Some(toml::Value::String(kind)) => kind.clone(),
        Some(other) => return Err(err("executor.type", format!("expected a string, found {}", other.type_str()))),
        None => return Err(err("executor.type", "missing (http, command or builtin)".into())),
    };
    let table = toml::Value::Table(executor);
    let mut capabilities = Vec::new();
    match kind.as_str() {
        "http" => {
            let http: HttpFile = from_toml(table, None, "executor.", file)?;
            for (name, op) in &operations {
                let spec = http_spec(&http, name, op, file, secret_exists)?;
                capabilities.push(capability(&id, &parsed.description, name, op, None, Executor::Http(spec), file)?);
            }
        }
        "command" => {
            let command: CommandFile = from_toml(table, None, "executor.", file)?;
            let spec = Arc::new(command_spec(command, file)?);
            for (name, op) in &operations {
                only_http(name, op, file)?;
                let executor = Executor::Command(spec.clone());
                capabilities.push(capability(&id, &parsed.description, name, op, None, executor, file)?);
            }
        }
        "builtin" => {
            let llm: BuiltinFile = from_toml(table, None, "executor.", file)?;
            if format!("{id}.complete") != builtin::LLM_COMPLETE {
                return Err(err(
                    "id",
                    format!(
                        "a builtin skill configures a builtin that needs it: only \"llm\" (llm.complete) does; \
                         {} are always present",
                        builtin::CONFIGLESS.join(" and ")
                    ),
                ));
            }
            let spec = Arc::new(llm_spec(llm, file, secret_exists)?);
            for (name, op) in &operations {
                if name != "complete" {
                    return Err(err(
                        &format!("operations.{name}"),
                        "the llm builtin has one operation: complete".into(),
                    ));
                }
                only_http(name, op, file)?;
                let default_schema = Some(builtin::llm_complete_input_schema());
                let executor = Executor::Llm(spec.clone());
                capabilities.push(capability(&id, &parsed.description, name, op, default_schema, executor, file)?);
            }
        }
        other => {
            return Err(err(
                "executor.type",
                format!("unknown executor {other:?} (expected http, command or builtin)"),
            ));
        }
    }
    Ok(Skill { id, description: parsed.description, file: file.to_owned(), capabilities })
}

/// Deserializes with the path of the offending field (`operations.send.url`)
/// so that an unknown or mistyped field is named in the error.
fn from_toml<'de, T: DeserializeOwned, D: serde::Deserializer<'de, Error = toml::de::Error>>(
    deserializer: D,
    text: Option<&str>,
    prefix: &str,
    file: &Path,
) -> Result<T, LoadError> {
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { prefix.trim_end_matches('.').to_owned() } else { format!("{prefix}{path}") };
        let inner = e.into_inner();
        let line = text.zip(inner.span()).map(|(text, span)| text[..span.start].lines().count().max(1));
        let mut reason = inner.message().trim_end().replace('\n', " ");
        if let Some(line) = line {
            reason.push_str(&format!(" (line {line})"));
        }
        LoadError::file(file, if field.is_empty() { "(toml)" } else { &field }, reason)
    })
}

/// One capability from one operation: the schemas compiled, so that an
/// invalid one is refused here and not at the first call.
fn capability(
    skill_id: &str,
    skill_description: &str,
    name: &str,
    op: &OperationFile,
    default_schema: Option<Value>,
    executor: Executor,
    file: &Path,
) -> Result<Capability, LoadError> {
    let field = |what: &str| format!("operations.{name}.{what}");
    let input_schema = op.input_schema.clone().or(default_schema).ok_or_else(|| {
        LoadError::file(file, &field("input_schema"), "missing: every operation needs an input JSON Schema")
    })?;
    check_schema(&input_schema, true).map_err(|r| LoadError::file(file, &field("input_schema"), r))?;
    if let Some(output) = &op.output_schema {
        check_schema(output, false).map_err(|r| LoadError::file(file, &field("output_schema"), r))?;
    }
    let description = if op.description.is_empty() { skill_description } else { &op.description };
    let id = format!("{skill_id}.{name}");
    let mut capability = Capability::new(&id, description, input_schema, executor)
        .map_err(|r| LoadError::file(file, &field("input_schema"), r))?;
    if let Some(output) = &op.output_schema {
        capability = capability
            .with_output_schema(output.clone())
            .map_err(|r| LoadError::file(file, &field("output_schema"), r))?;
    }
    Ok(capability)
}

/// A schema that compiles; an input schema must describe an object, since
/// an agent's inputs are named fields (and URL placeholders name them).
fn check_schema(schema: &Value, input: bool) -> Result<(), String> {
    jsonschema::validator_for(schema).map_err(|e| format!("invalid JSON Schema: {e}"))?;
    if input && schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err("an input schema must have \"type\": \"object\" (inputs are named fields)".into());
    }
    Ok(())
}

fn http_spec(
    http: &HttpFile,
    name: &str,
    op: &OperationFile,
    file: &Path,
    secret_exists: &dyn Fn(&str) -> bool,
) -> Result<Arc<HttpSpec>, LoadError> {
    let err = |field: &str, reason: String| LoadError::file(file, field, reason);
    let (method_field, method) = match (&op.method, &http.method) {
        (Some(m), _) => (format!("operations.{name}.method"), m.as_str()),
        (None, Some(m)) => ("executor.method".to_owned(), m.as_str()),
        (None, None) => ("executor.method".to_owned(), "GET"),
    };
    let method = HttpMethod::parse(method)
        .ok_or_else(|| err(&method_field, format!("{method:?} is not one of GET, POST, PUT, PATCH, DELETE")))?;
    let (url_field, url) = match (&op.url, &http.url) {
        (Some(u), _) => (format!("operations.{name}.url"), u),
        (None, Some(u)) => ("executor.url".to_owned(), u),
        (None, None) => {
            return Err(err("executor.url", "missing: an http skill needs a url (here or per operation)".into()))
        }
    };
    let template = UrlTemplate::parse(url).map_err(|e| err(&url_field, e.to_string()))?;
    // Every placeholder is a required, declared input, so a validated call
    // always fills the whole URL. (No schema at all is reported as such, by
    // `capability`.)
    let schema = op.input_schema.as_ref();
    let declared = |p: &str| schema.and_then(|s| s.get("properties")).and_then(|props| props.get(p)).is_some();
    let required = |p: &str| {
        schema.and_then(|s| s.get("required")).and_then(Value::as_array).is_some_and(|r| r.iter().any(|v| v == p))
    };
    for placeholder in template.placeholders().filter(|_| schema.is_some()) {
        if !declared(placeholder) || !required(placeholder) {
            return Err(err(
                &url_field,
                format!(
                    "placeholder {{{placeholder}}} must be a property listed in operations.{name}.input_schema \
                     and in its `required`"
                ),
            ));
        }
    }
    for (header, value) in &http.headers {
        let field = format!("executor.headers.{header}");
        if header.is_empty() || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            return Err(err(&field, "not a header name".into()));
        }
        if RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
            return Err(err(&field, "set by the supervisor (for a bearer token, use bearer_secret)".into()));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(err(&field, "control characters (CR, LF, ...) are not allowed in a header value".into()));
        }
    }
    let timeout_secs =
        bounded(http.timeout_secs, 10, MAX_HTTP_TIMEOUT_SECS).map_err(|r| err("executor.timeout_secs", r))?;
    let max_response_bytes =
        bounded(http.max_response_bytes, MIB, MAX_RESPONSE_BYTES).map_err(|r| err("executor.max_response_bytes", r))?;
    if let Some(secret) = &http.bearer_secret {
        check_secret(secret, secret_exists).map_err(|r| err("executor.bearer_secret", r))?;
    }
    let store_token = match &http.store_token {
        None => None,
        Some(store) => {
            crate::secrets::validate_name(&store.secret)
                .map_err(|e| err("executor.store_token.secret", e.to_string()))?;
            if !store.pointer.starts_with('/') {
                return Err(err(
                    "executor.store_token.pointer",
                    format!("{:?} is not a JSON pointer (like /access_token)", store.pointer),
                ));
            }
            Some(StoreToken { secret: store.secret.clone(), pointer: store.pointer.clone() })
        }
    };
    Ok(Arc::new(HttpSpec {
        method,
        url: template,
        headers: http.headers.clone(),
        timeout: Duration::from_secs(timeout_secs),
        max_response_bytes,
        bearer_secret: http.bearer_secret.clone(),
        store_token,
    }))
}

fn command_spec(command: CommandFile, file: &Path) -> Result<CommandSpec, LoadError> {
    let err = |field: &str, reason: &str| LoadError::file(file, field, reason);
    let argv = command.argv.ok_or_else(|| err("executor.argv", "missing: a command skill needs argv"))?;
    match argv.first() {
        None => return Err(err("executor.argv", "empty")),
        Some(program) if !program.starts_with('/') => {
            return Err(err("executor.argv", "argv[0] must be an absolute path (no PATH lookup on the host)"))
        }
        Some(_) => {}
    }
    if argv.iter().any(|arg| arg.contains('\0')) {
        return Err(err("executor.argv", "an argument contains a NUL byte"));
    }
    let profile = command.profile.unwrap_or_else(|| "default".to_owned());
    let is_profile_name =
        !profile.is_empty() && profile.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    let is_profile_path = profile.starts_with('/') && profile.ends_with(".toml");
    if !is_profile_name && !is_profile_path {
        return Err(err("executor.profile", "expected a profile name or an absolute path to a .toml profile"));
    }
    let time_limit_secs =
        bounded(command.time_limit_secs, 10, MAX_COMMAND_TIME_SECS).map_err(|r| err("executor.time_limit_secs", &r))?;
    let max_output_bytes =
        bounded(command.max_output_bytes, MIB, MAX_RESPONSE_BYTES).map_err(|r| err("executor.max_output_bytes", &r))?;
    if command.memory_bytes.is_some_and(|m| m < MIB) {
        return Err(err("executor.memory_bytes", "less than 1 MiB cannot run a program"));
    }
    if command.pids == Some(0) {
        return Err(err("executor.pids", "0 would forbid even the program itself"));
    }
    Ok(CommandSpec {
        argv,
        profile,
        time_limit: Duration::from_secs(time_limit_secs),
        max_output_bytes,
        memory_bytes: command.memory_bytes,
        pids: command.pids,
    })
}

fn llm_spec(llm: BuiltinFile, file: &Path, secret_exists: &dyn Fn(&str) -> bool) -> Result<LlmSpec, LoadError> {
    let err = |field: &str, reason: String| LoadError::file(file, field, reason);
    let endpoint = llm.endpoint.ok_or_else(|| err("executor.endpoint", "missing: the chat completions URL".into()))?;
    let template = UrlTemplate::parse(&endpoint).map_err(|e| err("executor.endpoint", e.to_string()))?;
    if template.placeholders().next().is_some() {
        return Err(err("executor.endpoint", "a fixed URL: no placeholders".into()));
    }
    let model = llm.model.filter(|m| !m.is_empty()).ok_or_else(|| err("executor.model", "missing".into()))?;
    if let Some(secret) = &llm.api_key_secret {
        check_secret(secret, secret_exists).map_err(|r| err("executor.api_key_secret", r))?;
    }
    let timeout_secs =
        bounded(llm.timeout_secs, 60, MAX_LLM_TIMEOUT_SECS).map_err(|r| err("executor.timeout_secs", r))?;
    let max_response_bytes =
        bounded(llm.max_response_bytes, MIB, MAX_RESPONSE_BYTES).map_err(|r| err("executor.max_response_bytes", r))?;
    Ok(LlmSpec {
        endpoint,
        model,
        api_key_secret: llm.api_key_secret,
        timeout: Duration::from_secs(timeout_secs),
        max_response_bytes,
    })
}

/// `method` and `url` per operation belong to http skills only.
fn only_http(name: &str, op: &OperationFile, file: &Path) -> Result<(), LoadError> {
    for (field, set) in [("method", op.method.is_some()), ("url", op.url.is_some())] {
        if set {
            return Err(LoadError::file(
                file,
                &format!("operations.{name}.{field}"),
                "only http skills take this field",
            ));
        }
    }
    Ok(())
}

fn check_secret(name: &str, secret_exists: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty secret name".into());
    }
    if !secret_exists(name) {
        return Err(format!("secret {name:?} does not resolve: it is not in the secret store"));
    }
    Ok(())
}

/// `value` or `default`, which must be within 1..=`max`.
fn bounded(value: Option<u64>, default: u64, max: u64) -> Result<u64, String> {
    match value.unwrap_or(default) {
        0 => Err("must be at least 1".into()),
        v if v > max => Err(format!("{v} is above the maximum, {max}")),
        v => Ok(v),
    }
}

/// Skill ids and operation names: `[a-z][a-z0-9_-]*`.
fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The names of the secrets a loaded set refers to (for the operator, and
/// to check them again when the secret store changes).
pub fn secret_names(skills: &[Skill]) -> BTreeSet<String> {
    skills
        .iter()
        .flat_map(|s| &s.capabilities)
        .filter_map(|c| match &c.executor {
            Executor::Http(spec) => spec.bearer_secret.clone(),
            Executor::Llm(spec) => spec.api_key_secret.clone(),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{listing, InputError, Registry};
    use serde_json::json;

    const SCHEMA: &str =
        r#"input_schema = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }"#;

    fn http_skill(id: &str, op: &str) -> String {
        format!(
            "id = \"{id}\"\n[executor]\ntype = \"http\"\nurl = \"https://api.test/v1/{{city}}\"\n\
             [operations.{op}]\n{SCHEMA}\n"
        )
    }

    fn known_secret(name: &str) -> bool {
        name == "known"
    }

    /// Loads these files from a fresh directory.
    fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Vec<Skill>, LoadError>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let loaded = load_dir(dir.path(), &known_secret);
        (dir, loaded)
    }

    /// The load fails with `<dir>/<file>: <field>: ...` and a reason holding `why`.
    fn assert_refused(files: &[(&str, &str)], file: &str, field: &str, why: &str) {
        let (dir, loaded) = load(files);
        let err = loaded.expect_err("the load should fail").to_string();
        let prefix = format!("{}: {field}: ", dir.path().join(file).display());
        assert!(err.starts_with(&prefix), "expected {prefix:?}..., got {err:?}");
        assert!(err.contains(why), "expected {why:?} in {err:?}");
    }

    #[test]
    fn a_stored_token_resolves_for_other_skills_and_its_fields_are_checked() {
        let login = http_skill("auth", "login")
            .replace("[operations", "store_token = { secret = \"session\", pointer = \"/token\" }\n[operations");
        let user = http_skill("me", "get").replace("[operations", "bearer_secret = \"session\"\n[operations");
        let (_dir, loaded) = load(&[("auth.toml", &login), ("me.toml", &user)]);
        assert_eq!(loaded.unwrap().len(), 2);
        // Without the skill that stores it, the name does not resolve.
        assert_refused(&[("me.toml", &user)], "me.toml", "executor.bearer_secret", "does not resolve");
        let bad = login.replace("/token", "token");
        assert_refused(&[("auth.toml", &bad)], "auth.toml", "executor.store_token.pointer", "JSON pointer");
        let bad = login.replace("\"session\"", "\"bad name!\"");
        assert_refused(&[("auth.toml", &bad)], "auth.toml", "executor.store_token.secret", "");
    }

    #[test]
    fn the_shipped_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/skills");
        let secrets = |name: &str| ["weather_api_key", "openai_api_key"].contains(&name);
        let skills = load_dir(&dir, &secrets).unwrap();
        let ids: Vec<_> = skills.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["llm", "weather", "wordcount"]);
        assert_eq!(secret_names(&skills).into_iter().collect::<Vec<_>>(), ["openai_api_key", "weather_api_key"]);

        let registry = Registry::with_skills(skills).unwrap();
        let ids: Vec<_> = registry.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["chat.send", "llm.complete", "run.note", "weather.forecast", "weather.report", "wordcount.count"]
        );
        let forecast = registry.get("weather.forecast").unwrap();
        let Executor::Http(spec) = &forecast.executor else { panic!("{:?}", forecast.executor) };
        assert_eq!(spec.method, HttpMethod::Get);
        assert_eq!(
            spec.url.render(&json!({"city": "Paris", "days": 3})).unwrap(),
            "https://api.weather.example.test/v1/forecast/Paris?days=3"
        );
        assert_eq!(registry.get("weather.report").unwrap().executor.kind(), "http");
        let count = registry.get("wordcount.count").unwrap();
        assert_eq!(count.validate(&json!({})), Err(InputError::Missing(vec!["text".into()])));
        assert!(count.validate_output(&json!({"words": 2, "lines": 1})).is_ok());
        assert!(count.validate_output(&json!({"words": "2"})).is_err());
        let llm = registry.get("llm.complete").unwrap();
        assert!(llm.validate(&json!({"messages": [{"role": "user", "content": "hi"}]})).is_ok());

        let listed = listing(&registry);
        let text = listed.to_string();
        for hidden in ["weather_api_key", "openai_api_key", "api.weather.example.test", "python3", "Accept"] {
            assert!(!text.contains(hidden), "{hidden} is listed: {text}");
        }
        let forecast = &listed["capabilities"].as_array().unwrap()[3];
        assert_eq!(forecast["id"], "weather.forecast");
        assert_eq!(forecast["executor"], "http");
        assert_eq!(forecast["uses_secret"], true);
        assert_eq!(forecast["input_schema"]["required"], json!(["city", "days"]));
        assert_eq!(forecast["output_schema"]["required"], json!(["days"]));
    }

    #[test]
    fn only_toml_files_are_read_in_name_order() {
        let (_dir, loaded) =
            load(&[("b.toml", &http_skill("b", "get")), ("a.toml", &http_skill("a", "get")), ("notes.md", "x = ")]);
        let ids: Vec<_> = loaded.unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn a_missing_id_is_refused() {
        let text = http_skill("x", "get").replace("id = \"x\"\n", "");
        assert_refused(&[("x.toml", &text)], "x.toml", "id", "missing");
        let text = http_skill("Mail", "get");
        assert_refused(&[("x.toml", &text)], "x.toml", "id", "not a skill id");
    }

    #[test]
    fn a_skill_without_operations_is_refused() {
        let text = "id = \"x\"\n[executor]\ntype = \"http\"\nurl = \"https://api.test/\"\n";
        assert_refused(&[("x.toml", text)], "x.toml", "operations", "no operations");
        let text = format!("{text}[operations]\n");
        assert_refused(&[("x.toml", &text)], "x.toml", "operations", "no operations");
        let text = http_skill("x", "Send");
        assert_refused(&[("x.toml", &text)], "x.toml", "operations.Send", "not an operation name");
    }

    #[test]
    fn an_unknown_executor_is_refused() {
        let text = http_skill("x", "get").replace("type = \"http\"", "type = \"ftp\"");
        assert_refused(&[("x.toml", &text)], "x.toml", "executor.type", "unknown executor \"ftp\"");
        let text = http_skill("x", "get").replace("type = \"http\"\n", "");
        assert_refused(&[("x.toml", &text)], "x.toml", "executor.type", "missing");
        let text = "id = \"x\"\n[operations.get]\n".to_owned() + SCHEMA;
        assert_refused(&[("x.toml", &text)], "x.toml", "executor", "missing");
    }

    #[test]
    fn an_invalid_schema_is_refused() {
        let text = http_skill("x", "get").replace("type = \"string\"", "type = 12");
        assert_refused(&[("x.toml", &text)], "x.toml", "operations.get.input_schema", "invalid JSON Schema");
        let text = format!("{}output_schema = {{ minimum = \"no\" }}\n", http_skill("x", "get"));
        assert_refused(&[("x.toml", &text)], "x.toml", "operations.get.output_schema", "invalid JSON Schema");
        let text = http_skill("x", "get").replace(SCHEMA, "");
        assert_refused(&[("x.toml", &text)], "x.toml", "operations.get.input_schema", "missing");
        let text = http_skill("x", "get").replace("type = \"object\", ", "");
        assert_refused(&[("x.toml", &text)], "x.toml", "operations.get.input_schema", "\"type\": \"object\"");
    }

    #[test]
    fn duplicate_ids_are_refused_naming_both_files() {
        let (dir, loaded) = load(&[("a.toml", &http_skill("mail", "get")), ("b.toml", &http_skill("mail", "put"))]);
        let err = loaded.unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: id: duplicate skill id", dir.path().join("b.toml").display())), "{err}");
        assert!(err.contains(&dir.path().join("a.toml").display().to_string()), "{err}");
    }

    #[test]
    fn a_builtin_id_is_refused() {
        let text = http_skill("run", "note");
        assert_refused(&[("run.toml", &text)], "run.toml", "id", "\"run.note\": it is a builtin");
        // llm.complete only through a builtin skill file.
        let text = http_skill("llm", "complete");
        assert_refused(&[("llm.toml", &text)], "llm.toml", "id", "\"llm.complete\": it is a builtin");
        // And the registry checks again, for skills that did not come through load_dir.
        let skill = parse_skill(&http_skill("chat", "send"), Path::new("chat.toml"), &known_secret).unwrap();
        let err = Registry::with_skills(vec![skill]).unwrap_err().to_string();
        assert!(err.starts_with("chat.toml: id: duplicate capability id \"chat.send\""), "{err}");
        let twice = || parse_skill(&http_skill("w", "get"), Path::new("w.toml"), &known_secret).unwrap();
        let err = Registry::with_skills(vec![twice(), twice()]).unwrap_err().to_string();
        assert!(err.starts_with("w.toml: id: duplicate capability id \"w.get\""), "{err}");
    }

    #[test]
    fn an_unresolved_secret_is_refused() {
        let text = http_skill("x", "get").replace("[operations", "bearer_secret = \"nope\"\n[operations");
        assert_refused(&[("x.toml", &text)], "x.toml", "executor.bearer_secret", "\"nope\" does not resolve");
        let text = text.replace("nope", "known");
        assert!(load(&[("x.toml", &text)]).1.is_ok());
        let llm =
            "id = \"llm\"\n[executor]\ntype = \"builtin\"\nendpoint = \"http://127.0.0.1:8080/v1/chat/completions\"\n\
                   model = \"m\"\napi_key_secret = \"nope\"\n[operations.complete]\n";
        assert_refused(&[("llm.toml", llm)], "llm.toml", "executor.api_key_secret", "does not resolve");
    }

    #[test]
    fn bad_placeholders_are_refused() {
        let text = http_skill("x", "get").replace("{city}", "{town}");
        assert_refused(&[("x.toml", &text)], "x.toml", "executor.url", "placeholder {town} must be a property");
        let text = http_skill("x", "get").replace("required = [\"city\"]", "required = []");
        assert_refused(&[("x.toml", &text)], "x.toml", "executor.url", "and in its `required`");
        let text = http_skill("x", "get").replace("api.test/v1/{city}", "{city}.api.test/v1");
        assert_refused(&[("x.toml", &text)], "x.toml", "executor.url", "not allowed in the scheme, host or port");
        let text = format!("{}url = \"https://api.test/{{city}}/{{id}}\"\n", http_skill("x", "get"));
        assert_refused(&[("x.toml", &text)], "x.toml", "operations.get.url", "placeholder {id}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let text = format!("colour = \"red\"\n{}", http_skill("x", "get"));
        assert_refused(&[("x.toml", &text)], "x.toml", "colour", "unknown field `colour`");
        let text = http_skill("x", "get").replace("[operations", "argv = [\"/bin/true\"]\n[operations");
        assert_refused(&[("x.toml", &text)], "x.toml", "executor.argv", "unknown field `argv`");
        let text = format!("{}retries = 3\n", http_skill("x", "get"));
        assert_refused(&[("x.toml", &text)], "x.toml", "operations.get.retries", "unknown field `retries`");
        let text = http_skill("x", "get").replace("url = \"", "url = 5\nx = \"");
        assert_refused(&[("x.toml", &text)], "x.toml", "executor.url", "invalid type");
    }

    #[test]
    fn command_and_builtin_fields_are_checked() {
        let command = |executor: &str, op_extra: &str| {
            format!("id = \"c\"\n[executor]\ntype = \"command\"\n{executor}\n[operations.run]\n{SCHEMA}\n{op_extra}")
        };
        let ok = command("argv = [\"/bin/cat\"]", "");
        let skills = load(&[("c.toml", &ok)]).1.unwrap();
        let Executor::Command(spec) = &skills[0].capabilities[0].executor else { panic!() };
        assert_eq!((spec.profile.as_str(), spec.time_limit.as_secs()), ("default", 10));
        for (executor, op, field, why) in [
            ("", "", "executor.argv", "missing"),
            ("argv = [\"cat\"]", "", "executor.argv", "absolute path"),
            ("argv = [\"/bin/cat\"]\ntime_limit_secs = 0", "", "executor.time_limit_secs", "at least 1"),
            ("argv = [\"/bin/cat\"]\nprofile = \"../x\"", "", "executor.profile", "profile name"),
            ("argv = [\"/bin/cat\"]", "method = \"POST\"", "operations.run.method", "only http"),
        ] {
            assert_refused(&[("c.toml", &command(executor, op))], "c.toml", field, why);
        }
        let builtin = "id = \"notes\"\n[executor]\ntype = \"builtin\"\n[operations.note]\n";
        assert_refused(&[("n.toml", builtin)], "n.toml", "id", "only \"llm\"");
    }

    #[test]
    fn http_headers_and_limits_are_checked() {
        let with = |line: &str| http_skill("x", "get").replace("[operations", &format!("{line}\n[operations"));
        for (line, field, why) in [
            ("headers = { Authorization = \"Bearer k\" }", "executor.headers.Authorization", "bearer_secret"),
            ("headers = { Host = \"evil.test\" }", "executor.headers.Host", "set by the supervisor"),
            ("headers = { X-A = \"a\\r\\nX-B: b\" }", "executor.headers.X-A", "control characters"),
            ("headers = { \"a b\" = \"c\" }", "executor.headers.a b", "not a header name"),
            ("timeout_secs = 121", "executor.timeout_secs", "maximum, 120"),
            ("max_response_bytes = 16777217", "executor.max_response_bytes", "maximum"),
            ("method = \"TRACE\"", "executor.method", "not one of"),
        ] {
            assert_refused(&[("x.toml", &with(line))], "x.toml", field, why);
        }
    }
}
