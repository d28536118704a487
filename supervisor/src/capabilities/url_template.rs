//! URL templates for http skills: `https://api.example.test/v1/{city}?units={units}`.
//!
//! The scheme, host and port are fixed by the file: placeholders may stand
//! only for a whole query value or inside a path segment. At call time each
//! value is percent-encoded so that it stays inside its slot: everything but
//! the RFC 3986 unreserved characters is encoded (`/`, `?`, `#`, `%`, `@`,
//! `&`, `=`, CR, LF, ...), and a path segment that comes out as `.` or `..`
//! is refused, since a server or proxy would resolve it to another path.

use serde_json::Value;

/// Why a template was refused (at load) or could not be filled (at call).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0}")]
    Template(String),
    #[error("input `{field}`: {reason}")]
    Input { field: String, reason: String },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    /// `scheme://host[:port]`, never templated.
    origin: String,
    /// The path and query, literal text and placeholders in order.
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A placeholder in the path, encoded as (part of) one segment.
    Path(String),
    /// A placeholder that is a whole query value (`?k={name}`).
    Query(String),
}

/// Fills `template` with `inputs` (a JSON object); see [`UrlTemplate::render`].
pub fn render_url(template: &str, inputs: &Value) -> Result<String, UrlError> {
    UrlTemplate::parse(template)?.render(inputs)
}

impl UrlTemplate {
    pub fn parse(template: &str) -> Result<UrlTemplate, UrlError> {
        let err = |reason: &str| Err(UrlError::Template(reason.to_owned()));
        let Some((scheme, rest)) = template.split_once("://") else {
            return err("not an absolute URL (expected http:// or https://)");
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if scheme.contains(['{', '}']) || authority.contains(['{', '}']) {
            return err("placeholders are not allowed in the scheme, host or port: they are fixed by the skill file");
        }
        if scheme != "http" && scheme != "https" {
            return err("the scheme must be http or https");
        }
        if authority.is_empty() {
            return err("no host");
        }
        if authority.contains('@') {
            return err("no user information (`user@host`) in the URL: use bearer_secret for credentials");
        }
        if !authority.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
            return err("the host may hold only letters, digits, `.`, `-`, and `:port`");
        }
        if tail.contains('#') {
            return err("no fragment (`#...`): it is never sent to the server");
        }
        let parts = parse_tail(tail)?;
        Ok(UrlTemplate { origin: format!("{scheme}://{authority}"), parts })
    }

    /// The input fields the template names, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Path(name) | Part::Query(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The URL for these inputs. Only strings, numbers and booleans fill a
    /// placeholder; the origin and the template's literal text never change.
    pub fn render(&self, inputs: &Value) -> Result<String, UrlError> {
        let mut url = self.origin.clone();
        let path_start = url.len();
        for part in &self.parts {
            match part {
                Part::Literal(text) => url.push_str(text),
                Part::Path(name) => {
                    let value = scalar(inputs, name)?;
                    if value.is_empty() {
                        // `/forecast/` is another endpoint than `/forecast/x`.
                        return Err(input_err(name, "must not be empty in a URL path"));
                    }
                    url.push_str(&encode(&value));
                }
                Part::Query(name) => url.push_str(&encode(&scalar(inputs, name)?)),
            }
        }
        let path = url[path_start..].split('?').next().unwrap_or_default();
        if path.split('/').any(|segment| segment == "." || segment == "..") {
            return Err(UrlError::Input {
                field: self.placeholders().collect::<Vec<_>>().join(", "),
                reason: "a path segment may not be `.` or `..`".to_owned(),
            });
        }
        Ok(url)
    }
}

/// Splits the path-and-query into literals and placeholders, checking each
/// placeholder's position.
fn parse_tail(tail: &str) -> Result<Vec<Part>, UrlError> {
    let err = |reason: String| Err(UrlError::Template(reason));
    if !tail.is_empty() && !tail.starts_with(['/', '?']) {
        return err("the path must start with `/`".to_owned());
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut in_query = false;
    let mut chars = tail.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => {
                let close = tail[i..].find('}').map(|n| i + n);
                let Some(close) = close else { return err(format!("unclosed `{{` at byte {i}")) };
                let name = &tail[i + 1..close];
                if !is_name(name) {
                    return err(format!("`{{{name}}}` is not a placeholder (expected `{{field_name}}`)"));
                }
                while chars.peek().is_some_and(|&(j, _)| j <= close) {
                    chars.next();
                }
                if in_query {
                    // Only `k={name}` followed by `&` or the end: a value
                    // cannot become a key or a second parameter.
                    let after = tail[close + 1..].chars().next();
                    if !literal.ends_with('=') || !matches!(after, None | Some('&')) {
                        return err(format!("`{{{name}}}` in the query must be a whole value (`key={{{name}}}`)"));
                    }
                }
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(if in_query { Part::Query(name.to_owned()) } else { Part::Path(name.to_owned()) });
            }
            '}' => return err(format!("unmatched `}}` at byte {i}")),
            '?' if !in_query => {
                in_query = true;
                literal.push(c);
            }
            '%' => {
                let hex: String = tail[i + 1..].chars().take(2).collect();
                if hex.len() != 2 || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                    return err(format!("`%` at byte {i} is not a percent-encoding"));
                }
                literal.push(c);
            }
            c if c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?".contains(c) => literal.push(c),
            c => return err(format!("{c:?} is not allowed in a URL (percent-encode it)")),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    let path: String = parts
        .iter()
        .map(|p| match p {
            Part::Literal(text) => text.as_str(),
            _ => "x",
        })
        .collect();
    let path = path.split('?').next().unwrap_or_default();
    if path.split('/').any(|segment| segment == "." || segment == "..") {
        return err("the path may not contain `.` or `..` segments".to_owned());
    }
    Ok(parts)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn input_err(field: &str, reason: &str) -> UrlError {
    UrlError::Input { field: field.to_owned(), reason: reason.to_owned() }
}

/// A placeholder's value as text: a string as is, a number or boolean in
/// its JSON form; anything else has no single URL form.
fn scalar(inputs: &Value, name: &str) -> Result<String, UrlError> {
    match inputs.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(_) => Err(input_err(name, "only a string, number or boolean can fill a URL placeholder")),
        None => Err(input_err(name, "missing (the URL needs it)")),
    }
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986 2.3), so a
/// value can never end a segment, start a query, or open a fragment.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEMPLATE: &str = "https://api.example.test/v1/forecast/{city}?units={units}&lang=en";
    const PREFIX: &str = "https://api.example.test/v1/forecast/";

    #[test]
    fn fills_path_and_query() {
        let url = render_url(TEMPLATE, &json!({"city": "New York", "units": "metric"})).unwrap();
        assert_eq!(url, "https://api.example.test/v1/forecast/New%20York?units=metric&lang=en");
        let url = render_url("http://127.0.0.1:8080/n/{n}.json", &json!({"n": 42})).unwrap();
        assert_eq!(url, "http://127.0.0.1:8080/n/42.json");
    }

    #[test]
    fn injected_values_stay_in_their_slot() {
        let payloads = [
            "../admin",
            "a/b",
            "?x=1",
            "#frag",
            "%2e%2e",
            "%2F",
            "@evil.test",
            "x@evil.test:80/",
            "//evil.test/",
            "ok\r\nHost: evil.test",
            "a&units=imperial",
            "a b+c",
            "\u{e9}\u{0}",
        ];
        for payload in payloads {
            for (city, units) in [(payload, "metric"), ("Paris", payload)] {
                let url = render_url(TEMPLATE, &json!({"city": city, "units": units})).unwrap();
                let rest = url.strip_prefix(PREFIX).unwrap_or_else(|| panic!("{payload:?} moved the prefix: {url}"));
                let (segment, query) = rest.split_once('?').expect("one query");
                assert!(!segment.contains(['/', '?', '#', '@', '\r', '\n']), "{payload:?} -> {url}");
                assert!(!query.contains(['/', '?', '#', '@', '\r', '\n', ' ']), "{payload:?} -> {url}");
                // Exactly the template's two parameters, in its order.
                let keys: Vec<_> = query.split('&').map(|kv| kv.split('=').next().unwrap()).collect();
                assert_eq!(keys, ["units", "lang"], "{payload:?} -> {url}");
                assert!(query.ends_with("&lang=en"), "{payload:?} -> {url}");
            }
        }
        let url = render_url(TEMPLATE, &json!({"city": "%2e%2e", "units": "m"})).unwrap();
        assert!(url.starts_with(&format!("{PREFIX}%252e%252e?")), "{url}");
    }

    #[test]
    fn dot_segments_and_non_scalars_are_refused() {
        for dots in [".", ".."] {
            let err = render_url(TEMPLATE, &json!({"city": dots, "units": "m"})).unwrap_err();
            assert!(err.to_string().contains("`..`"), "{err}");
        }
        // A literal dot next to the placeholder cannot make `..` either.
        assert!(render_url("https://h.test/a/.{x}", &json!({"x": "."})).is_err());
        assert!(render_url("https://h.test/a/{x}", &json!({"x": ""})).is_err());
        for bad in [json!({"city": ["a"], "units": "m"}), json!({"city": null, "units": "m"}), json!({"units": "m"})] {
            let err = render_url(TEMPLATE, &bad).unwrap_err();
            assert!(matches!(&err, UrlError::Input { field, .. } if field == "city"), "{err}");
        }
    }

    #[test]
    fn templates_that_could_move_the_host_are_refused() {
        for (template, why) in [
            ("https://{host}/x", "host"),
            ("https://api.{zone}.test/x", "host"),
            ("https://api.test:{port}/x", "port"),
            ("{scheme}://api.test/x", "scheme"),
            ("https://user:pw@api.test/x", "user information"),
            ("ftp://api.test/x", "http or https"),
            ("api.test/x", "absolute"),
            ("https://api.test/x#{frag}", "fragment"),
            ("https://api.test/x?{key}=1", "whole value"),
            ("https://api.test/x?k=a{v}", "whole value"),
            ("https://api.test/x?k={v}b", "whole value"),
            ("https://api.test/{a b}", "not a placeholder"),
            ("https://api.test/{a", "unclosed"),
            ("https://api.test/a}", "unmatched"),
            ("https://api.test/../admin/{x}", "`..`"),
            ("https://api.test/a b", "not allowed"),
            ("https://api.test/%zz", "percent"),
        ] {
            let err = UrlTemplate::parse(template).unwrap_err().to_string();
            assert!(err.contains(why), "{template}: {err}");
        }
    }

    #[test]
    fn placeholders_are_listed() {
        let t = UrlTemplate::parse(TEMPLATE).unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["city", "units"]);
    }
}
