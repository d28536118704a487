//! The log's half of redaction: a [`MakeWriter`] for `tracing_subscriber::fmt`
//! that runs each formatted event through the [`Redactor`] before it reaches
//! stderr (or any inner writer). The fmt layer formats a whole event, then
//! writes it and drops the writer; [`RedactingWriter`] buffers until then,
//! so an event is redacted as one piece, even when it spans several lines
//! or arrives in several writes.
//!
//! journald: `tracing_journald::Layer` sends each field to the journal
//! itself, and a layer cannot rewrite another layer's field values, so it
//! cannot be redacted from outside. When redaction is on, log through this
//! writer to stderr instead: under systemd stderr is the journal stream, so
//! every line still reaches the journal, redacted. What is lost is the
//! journal's per-field indexing (`journalctl RUN_ID=…`); the fields stay in
//! the text (`run_id=run_…`, so `journalctl -g run_…` finds them).

use std::io::{self, Write};
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;

use super::Redactor;

/// Wraps a [`MakeWriter`] so that everything written through it is redacted.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    redactor: Arc<Redactor>,
    inner: M,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(redactor: Arc<Redactor>, inner: M) -> RedactingMakeWriter<M> {
        RedactingMakeWriter { redactor, inner }
    }
}

/// The daemon's log writer: stderr, redacted. Use with
/// `tracing_subscriber::fmt::layer().with_writer(stderr_writer(redactor))`.
pub fn stderr_writer(redactor: Arc<Redactor>) -> RedactingMakeWriter<fn() -> io::Stderr> {
    RedactingMakeWriter::new(redactor, io::stderr)
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<'a, M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(&self.redactor, self.inner.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter::new(&self.redactor, self.inner.make_writer_for(meta))
    }
}

/// Collects one event's text; redacts and writes it on flush or drop.
pub struct RedactingWriter<'a, W: Write> {
    redactor: &'a Redactor,
    buf: Vec<u8>,
    inner: W,
}

impl<'a, W: Write> RedactingWriter<'a, W> {
    fn new(redactor: &'a Redactor, inner: W) -> RedactingWriter<'a, W> {
        RedactingWriter { redactor, buf: Vec::new(), inner }
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let result = self.inner.write_all(self.redactor.redact(&text).as_bytes());
        self.buf.clear();
        result.and_then(|()| self.inner.flush())
    }
}

impl<W: Write> Write for RedactingWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()
    }
}

impl<W: Write> Drop for RedactingWriter<'_, W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write (the fmt layer ignores its
        // own write errors too).
        let _ = self.emit();
    }
}
