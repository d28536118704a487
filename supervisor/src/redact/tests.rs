use std::sync::{Arc, Mutex};

use serde_json::json;

use super::*;

fn redactor() -> Redactor {
    Redactor::new()
}

fn assert_redacted(input: &str, expected: &str) {
    assert_eq!(redactor().redact(input), expected, "input: {input}");
}

fn assert_kept(input: &str) {
    let out = redactor().redact(input);
    assert!(matches!(out, Cow::Borrowed(_)), "changed: {input} -> {out}");
}

const HEX32: &str = "0123456789abcdef0123456789abcdef";
const HEX64: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn known_values_are_hidden_inside_longer_text() {
    let r = redactor();
    r.set_known([SecretValue::new("hunter2pass"), SecretValue::new("abc"), SecretValue::new("hunter2")]);
    assert_eq!(r.redact("login with xhunter2passy and hunter2!"), "login with x***REDACTED***y and ***REDACTED***!");
    // Shorter than 4 characters: not matched.
    assert_eq!(r.redact("abc abc"), "abc abc");
    r.set_known([]);
    assert_eq!(r.redact("hunter2"), "hunter2");
    assert!(!format!("{r:?}").contains("hunter"));
}

#[test]
fn authorization_headers() {
    assert_redacted("Authorization: Bearer abc.def", "Authorization: ***REDACTED***");
    assert_redacted("authorization:token123\nnext line", "authorization:***REDACTED***\nnext line");
    assert_redacted("Proxy-Authorization: Basic dXNlcjpwYXNz", "Proxy-Authorization: ***REDACTED***");
    assert_redacted(
        r#"{"authorization": "Digest u=1, r=2", "accept": "json"}"#,
        r#"{"authorization": "***REDACTED***", "accept": "json"}"#,
    );
    assert_redacted(
        r#"body="{\"Authorization\":\"Token xyz\",\"a\":1}""#,
        r#"body="{\"Authorization\":\"***REDACTED***\",\"a\":1}""#,
    );
    assert_kept("authorization failed for run_id=run_x");
    assert_kept("the x-authorization-mode header");
}

#[test]
fn bearer_and_basic_tokens() {
    assert_redacted("sent Bearer eyJhbGciOi.J9x with it", "sent Bearer ***REDACTED*** with it");
    assert_redacted("bearer abcdefgh1", "bearer ***REDACTED***");
    assert_redacted("BASIC dXNlcjpwYXNz", "BASIC ***REDACTED***");
    assert_kept("the basic approach is a well-known one");
    assert_kept("Basic Authentication is refused; bearer of news");
}

#[test]
fn vendor_key_shapes() {
    assert_redacted("key sk-proj-abcDEF0123456789_xyz used", "key ***REDACTED*** used");
    assert_redacted("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "***REDACTED***");
    assert_redacted("github_pat_11ABCDEFG0abcdefghijklmnop_qrstuv", "***REDACTED***");
    assert_redacted("slack xoxb-1234567890-abcdefghij", "slack ***REDACTED***");
    assert_redacted("aws AKIAIOSFODNN7EXAMPLE,", "aws ***REDACTED***,");
    assert_redacted("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig_nature-x ok", "jwt ***REDACTED*** ok");
    assert_kept("sk-short and task-abcdefghijklmnopqrstu and AKIA123");
}

#[test]
fn long_hex_and_base64_runs() {
    assert_redacted(&format!("key={HEX32} rest"), "key=***REDACTED*** rest");
    assert_redacted("aws_secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY done", "aws_secret ***REDACTED*** done");
    assert_redacted("t=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MjQyNDI= x", "t=***REDACTED*** x");
    // Too short, no digit, or no letter: kept.
    assert_kept("0123456789abcdef0123456789abcde and 12345678901234567890123456789012345678901234567890");
    assert_kept("a-very-long-identifier-made-of-words-only-and-nothing-else");
    assert_kept("Ordinary prose, with numbers like 3.14159 and 2024-05-01T12:00:00Z, stays.");
}

#[test]
fn our_ids_hashes_and_uuids_survive() {
    assert_kept(&format!("run_id=run_{HEX32} message_id=msg_{HEX32} session_id=sess_abc-123_XYZ"));
    assert_kept(&format!("profile_hash=sha256:{HEX64}"));
    assert_kept(&format!(r#"{{"hash":"{HEX64}","prev_hash":"{HEX64}"}} head_hash: {HEX64}"#));
    assert_kept("id 550e8400-e29b-41d4-a716-446655440000 and req-550e8400-e29b-41d4-a716-446655440000");
    assert_kept(&format!("/var/lib/ccos/runs/run_{HEX32}/target/x86_64-unknown-linux-gnu/out"));
    // Each part of a path is judged alone: a key-shaped part is still hidden,
    // and so (over-redaction, documented) is a long part mixing digits and letters.
    assert_redacted(
        &format!("/runs/run_{HEX32}/{HEX32}/x86_64-unknown-linux-gnu-with-a-long-suffix"),
        &format!("/runs/run_{HEX32}/***REDACTED***/***REDACTED***"),
    );
    // Multi-byte text right before a run (the context check works on bytes).
    assert_redacted(&format!("é€日{HEX64}"), "é€日***REDACTED***");
    assert_kept(&format!("é€日 sha256:{HEX64}"));
    // A 64-hex run without the label is still hidden.
    assert_redacted(&format!("value {HEX64}"), "value ***REDACTED***");
    // An id-like prefix does not vouch for arbitrary content.
    assert_redacted(&format!("run_{HEX32}{HEX32}"), "***REDACTED***");
}

#[test]
fn pem_private_keys() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAbc\n-----END RSA PRIVATE KEY-----";
    assert_redacted(&format!("key:\n{pem}\ntail"), "key:\n***REDACTED***\ntail");
    assert_redacted("-----BEGIN PRIVATE KEY-----\ncut off", "***REDACTED***");
}

#[test]
fn json_walk_hides_secret_keys_and_strings() {
    let r = redactor();
    r.set_known([SecretValue::new("topsecretvalue")]);
    let input = json!({
        "url": "https://api.example.com/v1?x=1",
        "headers": [{"Authorization": "Bearer x"}, {"X-Api-Key": {"nested": 1}}, {"accept": "json"}],
        "config": {"db_password": "pw", "client_secret": null, "Set-Cookie": ["a=b"], "max_tokens": 5},
        "note": "uses topsecretvalue here",
        "prev_hash": HEX64,
        "profile_hash": format!("sha256:{HEX64}"),
        "blob": HEX64,
        "count": 3,
    });
    let out = r.redact_json(&input);
    assert_eq!(
        out,
        json!({
            "url": "https://api.example.com/v1?x=1",
            "headers": [{"Authorization": REDACTED}, {"X-Api-Key": REDACTED}, {"accept": "json"}],
            "config": {"db_password": REDACTED, "client_secret": null, "Set-Cookie": REDACTED, "max_tokens": 5},
            "note": "uses ***REDACTED*** here",
            "prev_hash": HEX64,
            "profile_hash": format!("sha256:{HEX64}"),
            "blob": REDACTED,
            "count": 3,
        })
    );
}

#[test]
fn secret_key_names() {
    for key in ["authorization", "Password", "passwd", "secret", "token", "api_key", "apikey", "x_api_key"] {
        assert!(is_secret_key(key), "{key}");
    }
    for key in ["access_key", "PRIVATE_KEY", "cookie", "set-cookie", "X-API-KEY", "refresh_token", "client_secret"] {
        assert!(is_secret_key(key), "{key}");
    }
    for key in ["name", "secret_name", "max_tokens", "input_tokens", "hash", "tokenizer", "key"] {
        assert!(!is_secret_key(key), "{key}");
    }
}

#[test]
fn summarize_error_cuts_after_redacting() {
    let r = redactor();
    r.set_known([SecretValue::new("the-known-secret")]);
    assert_eq!(r.summarize_error("  connection refused  ", 80), "connection refused");
    assert_eq!(r.summarize_error("HTTP 401\nAuthorization: Bearer x\nbody...", 80), "HTTP 401…");
    assert_eq!(r.summarize_error("0123456789", 5), "0123…");
    assert_eq!(r.summarize_error("0123456789", 10), "0123456789");
    // Cut in the middle of a secret: it was redacted first, so no prefix leaks.
    let summary = r.summarize_error("failed: the-known-secret rejected", 15);
    assert_eq!(summary, "failed: ***RED…");
    assert!(!summary.contains("the-kn"));
    assert_eq!(r.summarize_error("", 10), "");
    assert_eq!(r.summarize_error("ééééé", 3), "éé…");
}

/// A `MakeWriter` target that collects everything into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn tracing_lines_are_redacted() {
    let redactor = Arc::new(Redactor::new());
    redactor.set_known([SecretValue::new("store-value-1234")]);
    let buffer = Buffer::default();
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(RedactingMakeWriter::new(Arc::clone(&redactor), move || sink.clone()))
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let run_id = format!("run_{HEX32}");
        tracing::info!(run_id = %run_id, key = "sk-abcdefghijklmnop1234", "calling with store-value-1234");
        tracing::warn!("upstream said:\nAuthorization: Bearer abcdefgh1\nend");
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains(&format!("run_id=run_{HEX32}")), "{text}");
    assert!(text.contains("calling with ***REDACTED***"), "{text}");
    assert!(text.contains(r#"key="***REDACTED***""#), "{text}");
    assert!(text.contains("Authorization: ***REDACTED***\nend"), "{text}");
    assert!(!text.contains("store-value") && !text.contains("sk-abc") && !text.contains("abcdefgh1"), "{text}");
}
