//! The JSON path (`syscalls[12].args[0].op`) of a serde error.
//!
//! serde_json reports where in the text it failed (line, column) but not in
//! which field. Rather than a path-tracking deserializer, we re-read the
//! text up to that point with a small scanner that tracks the open objects
//! and arrays: the innermost open key or index is the field that failed.
//! This runs only on an error, over text serde_json already accepted as
//! JSON up to that point.

/// Where the scanner is inside one open container.
enum Frame {
    /// In an object; `key` is the last key read, None right after `{` or `,`.
    Object { key: Option<String> },
    /// In an array; `index` is the element being read.
    Array { index: usize },
}

/// The path of the innermost field open at (line, column) as serde_json
/// reports them (line 1-based; column = bytes consumed on that line).
/// "" means the top-level value itself.
pub(crate) fn path_at(text: &[u8], line: usize, column: usize) -> String {
    let end = offset_of(text, line, column).min(text.len());
    let bytes = &text[..end];
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let (s, next) = read_string(bytes, i + 1);
                i = next;
                // A string right after `{` or `,` in an object is a key.
                if let Some(Frame::Object { key }) = stack.last_mut() {
                    if key.is_none() {
                        *key = Some(s);
                    }
                }
                continue;
            }
            b'{' => stack.push(Frame::Object { key: None }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { key }) => *key = None,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    render(&stack)
}

/// Joins frames as `a.b[3].c`.
fn render(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Object { key: Some(key) } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object { key: None } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// Reads a JSON string body starting after its opening quote; returns the
/// (unescaped enough for a key) text and the index after the closing quote,
/// or the end of input if it is cut off there.
fn read_string(bytes: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    let mut escaped = false;
    while i < bytes.len() {
        match (escaped, bytes[i]) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => return (String::from_utf8_lossy(&bytes[start..i]).into_owned(), i + 1),
            _ => {}
        }
        i += 1;
    }
    (String::from_utf8_lossy(&bytes[start..]).into_owned(), i)
}

fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        let newlines = text.iter().enumerate().filter(|(_, &b)| b == b'\n');
        newlines.map(|(i, _)| i + 1).nth(line - 2).unwrap_or(text.len())
    };
    line_start + column
}

#[cfg(test)]
mod tests {
    use super::path_at;
    use crate::seccomp::types::Profile;

    /// The path serde_json's own error position leads to.
    fn path_of_error(text: &str) -> String {
        let e = serde_json::from_str::<Profile>(text).unwrap_err();
        path_at(text.as_bytes(), e.line(), e.column())
    }

    #[test]
    fn paths_of_serde_errors() {
        let cases = [
            (r#"{"defaultAction": "SCMP_ACT_ALLOW", "bogus": 1}"#, "bogus"),
            (r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, "defaultAction"),
            (
                "{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [\n {\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"},\n {\"names\": [\"a\", 5], \"action\": \"SCMP_ACT_ALLOW\"}]}",
                "syscalls[1].names[1]",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "EQ"}]}]}"#,
                "syscalls[0].args[1].op",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": [], "arch": []}}]}"#,
                "syscalls[0].includes.arch",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}"#,
                "syscalls[0]",
            ),
            (r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a\"b"], "x\\": 1}]}"#, "syscalls[0].x\\\\"),
            (r#"{"defaultErrnoRet": -1, "defaultAction": "SCMP_ACT_ALLOW"}"#, "defaultErrnoRet"),
            (r#"[]"#, ""),
        ];
        for (text, want) in cases {
            assert_eq!(path_of_error(text), want, "{text}");
        }
    }
}
