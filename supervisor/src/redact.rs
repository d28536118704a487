//! The one redaction layer: every log line (through [`log_writer`]) and
//! every audit detail ([`Redactor::redact_json`]) passes through a
//! [`Redactor`], and executor errors are cut down by
//! [`Redactor::summarize_error`] before anyone sees them.
//!
//! What becomes `***REDACTED***`, in the order the passes run:
//! 1. every occurrence of a known secret value (from the
//!    [`crate::secrets::SecretStore`], see [`Redactor::set_known`]), longest
//!    first. Values shorter than 4 characters are not matched: redacting
//!    every `a` or `42` would make the log unreadable and hide nothing.
//! 2. PEM private key blocks (`-----BEGIN … PRIVATE KEY-----` to the END
//!    line, or to the end of the text).
//! 3. the value of an `Authorization:` or `Proxy-Authorization:` header
//!    (name case-insensitive) to the end of the line; in the quoted forms of
//!    JSON and Debug output (`"authorization": "…"`, also backslash-escaped)
//!    to the closing quote, so the rest of the line stays readable.
//! 4. the token after `Bearer` or `Basic` (case-insensitive), when it is at
//!    least 8 characters and looks like a credential: a digit, one of
//!    `+ / = _ . ~`, or an upper-case letter after the first character. So
//!    "the basic approach" and "Basic Authentication" survive.
//! 5. key-shaped strings whatever surrounds them: `sk-` plus 16 or more of
//!    `[A-Za-z0-9_-]`; GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` tokens and
//!    `github_pat_…`; Slack `xoxb-`/`xoxp-`/`xoxa-`/`xoxs-`; AWS access key
//!    ids `AKIA` + 16 of `[0-9A-Z]`; JWTs (`eyJ….eyJ….…`).
//! 6. long runs, found as maximal runs of `[A-Za-z0-9+/_-]` (plus up to two
//!    trailing `=`, so `key=value` pairs are judged by their value): a run
//!    of 32 or more hex digits, or of 40 or more characters, with at least
//!    one digit and one letter. Runs that are ours and harmless stay:
//!    - daemon ids `<word>_<32 lowercase hex>` (`run_…`, `msg_…`) and
//!      session ids `sess_…`;
//!    - UUIDs, bare or after a `<word>_`/`<word>-` prefix;
//!    - hex after `sha256:` (profile hashes), and 64 hex digits right after
//!      a label ending in `hash` (`hash=`, `"prev_hash":"`, `head_hash: `),
//!      which is how the audit chain prints its hashes;
//!    - a run that starts with `/`, or has such an id as one of its
//!      `/`-separated parts, is a path: each part is judged on its own, so
//!      `/var/lib/ccos/runs/run_…/x86_64-…` stays readable.
//!
//! Known gaps, on purpose: a secret shorter than 4 characters, a secret
//! that is encoded (percent- or base64-encoded) unless a pattern catches the
//! encoded form, and a hex secret printed right after a `…hash=` label. And
//! over-redaction, also on purpose: long identifiers that mix digits and
//! letters (`x86_64-unknown-linux-gnu-with-a-long-suffix`) are hidden; a
//! log line that hides too much is a lesser fault than one that leaks.

pub mod log_writer;

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, RwLock};

use regex::{Captures, Regex, RegexSet};
use serde_json::Value;

use crate::secrets::SecretValue;

pub use crate::secrets::REDACTED;
pub use log_writer::{stderr_writer, RedactingMakeWriter, RedactingWriter};

/// Known values shorter than this (in characters) are not matched.
pub const MIN_KNOWN_LEN: usize = 4;

/// Object keys (lower-cased, `-` read as `_`) that end with one of these
/// hold a secret whatever their value looks like.
const SECRET_KEY_SUFFIXES: &[&str] = &[
    "authorization",
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "cookie",
];

/// The compiled rules, built once per process.
struct Rules {
    /// Any of the pattern passes could apply: the fast path for lines with
    /// nothing to hide.
    any: RegexSet,
    pem: Regex,
    header: Regex,
    scheme: Regex,
    keys: Regex,
    run: Regex,
    /// Exemptions for a whole run.
    daemon_id: Regex,
    uuid: Regex,
    /// The text before a run that makes 64 hex digits an audit hash.
    hash_label: Regex,
}

const PEM: &str = r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)";
// Group 1 keeps the name and separator; group 2, the value, is replaced:
// a quoted value to its closing quote, an escaped-quoted one to its `\"`,
// anything else to the end of the line.
const HEADER: &str = r#"(?i)(\b(?:proxy-)?authorization\\?"?[ \t]*[:=][ \t]*)("(?:[^"\\\r\n]|\\.)*"?|\\"(?:[^\\\r\n]|\\[^"])*(?:\\")?|[^\r\n]*)"#;
const SCHEME: &str = r"(?i)\b(bearer|basic)([ \t]+)([A-Za-z0-9._~+/=-]{8,})";
const KEYS: &str = concat!(
    r"\bsk-[A-Za-z0-9_-]{16,}",
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"|\bxox[bpas]-[A-Za-z0-9-]{10,}",
    r"|\bAKIA[0-9A-Z]{16}\b",
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
);
const RUN: &str = r"[A-Za-z0-9+/_-]{32,}={0,2}";

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let re = |pattern: &str| Regex::new(pattern).expect("redaction patterns are valid");
    Rules {
        any: RegexSet::new([PEM, HEADER, SCHEME, KEYS, RUN]).expect("redaction patterns are valid"),
        pem: re(PEM),
        header: re(HEADER),
        scheme: re(SCHEME),
        keys: re(KEYS),
        run: re(RUN),
        daemon_id: re(r"^(?:[a-z]{1,16}_[0-9a-f]{32}|sess_[A-Za-z0-9_-]*)$"),
        uuid: re(
            r"^(?:[A-Za-z]{1,16}[_-])?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        ),
        hash_label: re(r#"(?i)hash\\?"?[ \t]*[:=][ \t]*\\?"?$"#),
    }
});

/// The process's redactor: every log line and every audit detail pass
/// through it (the one layer the daemon has), and the secret store tells it
/// the values to hide.
pub fn global() -> &'static Arc<Redactor> {
    static GLOBAL: std::sync::OnceLock<Arc<Redactor>> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(|| Arc::new(Redactor::new()))
}

/// Hides secrets in text and JSON; see the module doc for the rules.
/// Shared as `Arc<Redactor>`; [`Redactor::set_known`] may be called at any
/// time (after a `secret set`) and applies to the next line.
#[derive(Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is hidden whole.
    known: RwLock<Vec<SecretValue>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("known", &self.read_known().len()).finish()
    }
}

impl Redactor {
    /// A redactor with no known values yet (the patterns still apply).
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Replaces the set of known secret values (e.g. with
    /// `SecretStore::values()`).
    pub fn set_known(&self, values: impl IntoIterator<Item = SecretValue>) {
        let mut known: Vec<SecretValue> =
            values.into_iter().filter(|v| v.expose().chars().count() >= MIN_KNOWN_LEN).collect();
        known.sort_by(|a, b| b.expose().len().cmp(&a.expose().len()).then_with(|| a.expose().cmp(b.expose())));
        known.dedup();
        *self.known.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = known;
    }

    /// `text` with everything secret replaced by `***REDACTED***`;
    /// borrowed when there was nothing to hide.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for value in self.read_known().iter() {
            if out.contains(value.expose()) {
                out = Cow::Owned(out.replace(value.expose(), REDACTED));
            }
        }
        let rules = &*RULES;
        if !rules.any.is_match(&out) {
            return out;
        }
        out = replace(out, &rules.pem, |_, _| REDACTED.to_string());
        out = replace(out, &rules.header, |caps, _| format!("{}{}", &caps[1], quoted_like(&caps[2])));
        out = replace(out, &rules.scheme, |caps, _| {
            let token = &caps[3];
            let hidden = if looks_like_credential(token) { REDACTED } else { token };
            format!("{}{}{hidden}", &caps[1], &caps[2])
        });
        out = replace(out, &rules.keys, |_, _| REDACTED.to_string());
        replace(out, &rules.run, |caps, before| judge_run(rules, before, &caps[0]))
    }

    /// A copy of `value` with every string redacted, and the whole value of
    /// any key that names a secret (`password`, `x_api_key`, `Set-Cookie`,
    /// ...: see `SECRET_KEY_SUFFIXES`) replaced by `"***REDACTED***"`; a
    /// `null` stays `null`. Keys themselves are redacted like strings, and a
    /// key ending in `hash` keeps a value of 64 hex digits (audit hashes).
    pub fn redact_json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(items) => Value::Array(items.iter().map(|item| self.redact_json(item)).collect()),
            Value::Object(map) => map
                .iter()
                .map(|(key, value)| {
                    let value = if is_secret_key(key) && !value.is_null() {
                        Value::String(REDACTED.to_string())
                    } else if is_hash_key(key) && value.as_str().is_some_and(is_hash_value) {
                        value.clone()
                    } else {
                        self.redact_json(value)
                    };
                    (self.redact(key).into_owned(), value)
                })
                .collect(),
            Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
        }
    }

    /// An executor's error as one short line: redacted (before cutting, so
    /// that a cut cannot leave half a secret unrecognised), its first line
    /// only, at most `max` characters; `…` marks anything left out.
    pub fn summarize_error(&self, text: &str, max: usize) -> String {
        let redacted = self.redact(text);
        let trimmed = redacted.trim();
        let first = trimmed.lines().next().unwrap_or("").trim_end();
        let more = first.len() < trimmed.len();
        let count = first.chars().count();
        if count <= max && !more {
            return first.to_string();
        }
        let keep = if count < max { count } else { max.saturating_sub(1) };
        let mut summary: String = first.chars().take(keep).collect();
        summary.push('…');
        summary
    }

    fn read_known(&self) -> std::sync::RwLockReadGuard<'_, Vec<SecretValue>> {
        // Writers replace the vector whole, so a poisoned lock holds a
        // complete value.
        self.known.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs one pass; `f` gets the match and the text before it.
fn replace<'a>(text: Cow<'a, str>, re: &Regex, f: impl Fn(&Captures, &str) -> String) -> Cow<'a, str> {
    let hay: &str = &text;
    let replaced = match re.replace_all(hay, |caps: &Captures| f(caps, &hay[..caps.get(0).map_or(0, |m| m.start())])) {
        Cow::Borrowed(_) => None,
        Cow::Owned(s) => Some(s),
    };
    match replaced {
        // Only an actual change allocates; a match judged harmless
        // still yields an owned copy equal to the input, which is fine.
        Some(s) if s != *hay => Cow::Owned(s),
        _ => text,
    }
}

/// `***REDACTED***`, in the same quotes as the value it replaces.
fn quoted_like(value: &str) -> String {
    if value.starts_with("\\\"") {
        format!("\\\"{REDACTED}\\\"")
    } else if value.starts_with('"') {
        format!("\"{REDACTED}\"")
    } else {
        REDACTED.to_string()
    }
}

/// For rule 4: a credential rather than an English word.
fn looks_like_credential(token: &str) -> bool {
    token.chars().any(|c| c.is_ascii_digit() || matches!(c, '+' | '/' | '=' | '_' | '.' | '~'))
        || token.chars().skip(1).any(|c| c.is_ascii_uppercase())
}

/// Rule 6 for one run; returns what to print in its place.
fn judge_run(rules: &Rules, before: &str, run: &str) -> String {
    let parts = || run.split('/');
    if run.contains('/') && (run.starts_with('/') || parts().any(|part| is_ours(rules, part))) {
        return parts()
            .map(|part| if is_secret_run(rules, "", part) { REDACTED } else { part })
            .collect::<Vec<_>>()
            .join("/");
    }
    if is_secret_run(rules, tail(before, 40), run) {
        REDACTED.to_string()
    } else {
        run.to_string()
    }
}

fn is_ours(rules: &Rules, run: &str) -> bool {
    rules.daemon_id.is_match(run) || rules.uuid.is_match(run)
}

fn is_secret_run(rules: &Rules, before: &str, run: &str) -> bool {
    if is_ours(rules, run) {
        return false;
    }
    let has_digit = run.bytes().any(|b| b.is_ascii_digit());
    let has_letter = run.bytes().any(|b| b.is_ascii_alphabetic());
    let all_hex = run.bytes().all(|b| b.is_ascii_hexdigit());
    if all_hex {
        // Bytes, not str: `before` may end in multi-byte characters.
        let sha256 = before.as_bytes().ends_with(b"sha256:") || before.as_bytes().ends_with(b"SHA256:");
        if sha256 || (run.len() == 64 && rules.hash_label.is_match(before)) {
            return false;
        }
        return run.len() >= 32 && has_digit && has_letter;
    }
    run.len() >= 40 && has_digit && has_letter
}

/// The last `n` bytes of `text`, or fewer to stay on a char boundary.
fn tail(text: &str, n: usize) -> &str {
    let mut from = text.len().saturating_sub(n);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    &text[from..]
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    SECRET_KEY_SUFFIXES.iter().any(|suffix| key.ends_with(suffix))
}

fn is_hash_key(key: &str) -> bool {
    key.to_ascii_lowercase().ends_with("hash")
}

fn is_hash_value(value: &str) -> bool {
    let hex = value.strip_prefix("sha256:").unwrap_or(value);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests;
