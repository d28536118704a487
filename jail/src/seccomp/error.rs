//! Load errors. Every one names the origin (a file, or `<shipped default>`);
//! errors about a field name its JSON path; JSON errors give line and column.

/// Why a seccomp profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },

    /// Not JSON (or cut short).
    #[error("{origin}: line {line}, column {column}: invalid JSON: {reason}")]
    Syntax { origin: String, line: usize, column: usize, reason: String },

    /// JSON of the wrong shape: unknown field, wrong type, missing field,
    /// unknown action or operator name.
    #[error("{origin}: `{path}` (line {line}, column {column}): {reason}")]
    Schema { origin: String, path: String, line: usize, column: usize, reason: String },

    /// Well-formed but wrong: an unknown syscall, an argument index past 5,
    /// an unsupported action ...
    #[error("{origin}: `{path}`: {reason}")]
    Invalid { origin: String, path: String, reason: String },

    /// The profile is valid but cannot become a kernel filter (too large).
    #[error("{origin}: cannot compile: {reason}")]
    Compile { origin: String, reason: String },

    /// The running kernel's version could not be read (for `minKernel`).
    #[error("{origin}: cannot read the kernel version: {source}")]
    Kernel {
        origin: String,
        #[source]
        source: std::io::Error,
    },
}

impl SeccompError {
    /// From a serde_json error on `text`: syntax errors by line and column,
    /// shape errors also by the JSON path found at that position.
    pub(crate) fn from_json(origin: &str, text: &[u8], e: &serde_json::Error) -> Self {
        let (line, column) = (e.line(), e.column());
        // serde_json appends " at line L column C" to its messages; we say
        // that ourselves.
        let reason = e.to_string();
        let reason = match reason.rfind(" at line ") {
            Some(i) => reason[..i].to_string(),
            None => reason,
        };
        match e.classify() {
            serde_json::error::Category::Data => {
                let path = super::jsonpath::path_at(text, line, column);
                let path = if path.is_empty() { "(top level)".to_string() } else { path };
                Self::Schema { origin: origin.to_string(), path, line, column, reason }
            }
            _ => Self::Syntax { origin: origin.to_string(), line, column, reason },
        }
    }

    pub(crate) fn invalid(origin: &str, path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { origin: origin.to_string(), path: path.into(), reason: reason.into() }
    }
}
