//! A tiny blocking HTTP/1.1 client over a Unix socket, for `ccosctl`: one
//! request per connection (`Connection: close`), bodies framed by
//! Content-Length, chunked transfer encoding, or the end of the stream. The
//! body is read incrementally, so a held-open stream (`logs -f`, `/v1/events`)
//! can be copied out as it arrives.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected to (missing, refused, no permission).
    #[error("cannot connect to {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    /// The connection broke while talking.
    #[error("talking to the daemon: {0}")]
    Io(#[from] io::Error),
    /// The daemon's answer is not HTTP/1.1 as this client reads it.
    #[error("unreadable answer from the daemon: {0}")]
    Protocol(String),
}

/// An admin API client bound to one socket path.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// A whole answer, body read to its end.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// An answer whose head has been read; the body is read through [`Read`].
pub struct StreamingResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: Body,
}

impl StreamingResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Reads the rest of the body and makes a [`Response`].
    pub fn into_response(mut self) -> Result<Response, ClientError> {
        let mut body = Vec::new();
        self.body.read_to_end(&mut body)?;
        Ok(Response { status: self.status, headers: self.headers, body })
    }
}

impl Read for StreamingResponse {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

enum Framing {
    Length(u64),
    /// Bytes left in the current chunk; `None` before the first chunk.
    Chunked {
        left: u64,
        started: bool,
        done: bool,
    },
    Eof,
}

struct Body {
    reader: BufReader<UnixStream>,
    framing: Framing,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Eof => self.reader.read(buf),
            Framing::Length(left) => {
                if *left == 0 {
                    return Ok(0);
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early"));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked { left, started, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    if *started {
                        // The CRLF after the previous chunk's data.
                        let line = read_line(&mut self.reader)?;
                        if !line.is_empty() {
                            return Err(bad_data("no CRLF after a chunk"));
                        }
                    }
                    *started = true;
                    let line = read_line(&mut self.reader)?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| bad_data("bad chunk size"))?;
                    if size == 0 {
                        // Trailers, up to the empty line.
                        while !read_line(&mut self.reader)?.is_empty() {}
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended inside a chunk"));
                }
                *left -= n as u64;
                Ok(n)
            }
        }
    }
}

fn bad_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// One line without its CRLF; an error at EOF.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed early"));
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client { socket: socket.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends a request and reads the answer's head; the body is left to read.
    /// A `body` is sent as JSON with a Content-Length; `None` sends none.
    pub fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<StreamingResponse, ClientError> {
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|source| ClientError::Connect { path: self.socket.clone(), source })?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: ccos\r\nConnection: close\r\n");
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if let Some(body) = body {
            stream.write_all(body)?;
        }
        stream.flush()?;
        let mut reader = BufReader::new(stream);
        let status_line = read_line(&mut reader)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(ClientError::Protocol(format!("status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Protocol(format!("status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut reader)?;
            if line.is_empty() {
                break;
            }
            let (name, value) =
                line.split_once(':').ok_or_else(|| ClientError::Protocol(format!("header line {line:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let framing = if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else if header(&headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            Framing::Chunked { left: 0, started: false, done: false }
        } else if let Some(len) = header(&headers, "content-length") {
            Framing::Length(len.parse().map_err(|_| ClientError::Protocol(format!("Content-Length {len:?}")))?)
        } else {
            Framing::Eof
        };
        Ok(StreamingResponse { status, headers, body: Body { reader, framing } })
    }

    /// Sends a request and reads the whole answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Response, ClientError> {
        self.send(method, path, body)?.into_response()
    }

    pub fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request("GET", path, None)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<Response, ClientError> {
        self.request("POST", path, Some(body.to_string().as_bytes()))
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&...` from the pairs whose value is present.
pub fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let query: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{}={}", encode(k), encode(v)))).collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    /// Serves one connection: reads the request head, then writes `parts`
    /// with a pause between them.
    fn serve(parts: Vec<&'static [u8]>) -> (tempfile::TempDir, Client, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            while reader.read_line(&mut head).unwrap() > 2 && !head.ends_with("\r\n\r\n") {}
            for part in parts {
                conn.write_all(part).unwrap();
                std::thread::sleep(Duration::from_millis(30));
            }
            head
        });
        (dir, Client::new(path), server)
    }

    #[test]
    fn reads_chunked_bodies_as_they_arrive() {
        let (_dir, client, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"3\r\nabc\r\n",
            b"5;ext=1\r\nde\nfg\r\n",
            b"0\r\n\r\n",
        ]);
        let mut r = client.send("GET", "/x?follow=true", None).unwrap();
        assert_eq!(r.status, 200);
        let mut buf = [0u8; 64];
        let n = r.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"abc", "the first chunk, before the rest was sent");
        let rest = r.into_response().unwrap();
        assert_eq!(rest.body, b"de\nfg");
        let head = server.join().unwrap();
        assert!(head.starts_with("GET /x?follow=true HTTP/1.1\r\n"), "{head:?}");
    }

    #[test]
    fn reads_content_length_and_eof_bodies() {
        let (_dir, client, server) =
            serve(vec![b"HTTP/1.1 409 Conflict\r\ncontent-length: 10\r\nApi-Version: 1\r\n\r\n{\"a\":", b"true}"]);
        let r = client.post_json("/v1/runs", &serde_json::json!({"x": 1})).unwrap();
        assert_eq!((r.status, r.header("api-version"), r.json()), (409, Some("1"), serde_json::json!({"a": true})));
        assert!(!r.is_success());
        let head = server.join().unwrap();
        assert!(head.contains("Content-Length: 7\r\n"), "{head:?}");

        let (_dir, client, server) = serve(vec![b"HTTP/1.1 200 OK\r\n\r\nto the", b" end"]);
        assert_eq!(client.get("/").unwrap().body, b"to the end");
        server.join().unwrap();
    }

    #[test]
    fn a_missing_socket_is_a_connect_error_naming_it() {
        let e = Client::new("/nonexistent/ccos.sock").get("/_ping").unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }));
        assert!(e.to_string().contains("/nonexistent/ccos.sock"), "{e}");
    }

    #[test]
    fn encodes_and_builds_queries() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(
            with_query("/v1/runs", &[("session_id", Some("s 1".into())), ("state", None)]),
            "/v1/runs?session_id=s%201"
        );
        assert_eq!(with_query("/v1/runs", &[("state", None)]), "/v1/runs");
    }
}
