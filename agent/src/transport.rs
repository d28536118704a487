//! HTTP/1.1 over a Unix socket, just enough for the agent API: one request per
//! connection (`Connection: close`), an optional JSON body with a
//! Content-Length, and answers framed by Content-Length, chunked transfer
//! encoding, or the end of the stream. Blocking with timeouts: the agent has
//! nothing else to do while it waits, and no async runtime keeps the binary
//! small. Modelled on the supervisor's admin client, but standalone: this crate
//! runs inside the jail and must not pull in the daemon.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest answer read into memory. Agent API answers are small JSON
/// documents; a bigger one means something is wrong, and the agent should not
/// be the process that runs out of its cgroup's memory over it.
pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// How long a request may take to be written: the supervisor reads requests
/// at once, so a stall here means it is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no usable HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket could not be connected to (missing, refused, no permission).
    #[error(
        "cannot connect to the agent socket {}: {source} (inside a ccos jail it is /run/ccos/agent.sock; \
         elsewhere set CCOS_AGENT_SOCKET or --socket)",
        path.display()
    )]
    Connect { path: PathBuf, source: io::Error },
    /// No (complete) answer within the timeout.
    #[error("no answer from the supervisor within {} s", after.as_secs_f64())]
    Timeout { after: Duration },
    /// The connection broke while talking.
    #[error("talking to the supervisor: {0}")]
    Io(io::Error),
    /// The answer is not HTTP/1.1 as this client reads it.
    #[error("unreadable HTTP answer from the supervisor: {0}")]
    Malformed(String),
    /// The answer's body is larger than [`MAX_BODY_BYTES`].
    #[error("the supervisor's answer is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

impl TransportError {
    /// Sorts an I/O error from the exchange: timeouts and malformed data get
    /// their own variants, so callers can tell "try again" from "give up".
    fn from_io(e: io::Error, timeout: Duration) -> TransportError {
        match e.kind() {
            // SO_RCVTIMEO expiring reads as EAGAIN (WouldBlock) on Linux.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::Timeout { after: timeout },
            _ if e.get_ref().is_some_and(|inner| inner.is::<BodyTooLarge>()) => TransportError::TooLarge,
            io::ErrorKind::InvalidData => TransportError::Malformed(e.to_string()),
            _ => TransportError::Io(e),
        }
    }
}

/// A whole answer, body read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Talks to one socket path; each request opens its own connection.
#[derive(Debug, Clone)]
pub struct Transport {
    socket: PathBuf,
}

impl Transport {
    pub fn new(socket: impl Into<PathBuf>) -> Transport {
        Transport { socket: socket.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and reads the whole answer. `target` is the path
    /// with its query; a `body` is sent as JSON. `timeout` bounds each read,
    /// so a long-poll must pass more than it asks the server to wait.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|source| TransportError::Connect { path: self.socket.clone(), source })?;
        let exchange = |stream: &mut UnixStream| -> io::Result<Response> {
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
            stream.write_all(&request_head(method, target, body.map(<[u8]>::len)))?;
            if let Some(body) = body {
                stream.write_all(body)?;
            }
            stream.flush()?;
            read_response(&mut BufReader::new(stream), method)
        };
        exchange(&mut stream).map_err(|e| TransportError::from_io(e, timeout))
    }
}

/// The request line and headers. `Connection: close` keeps framing simple:
/// one request per connection, and the server may end a body by closing.
fn request_head(method: &str, target: &str, body_len: Option<usize>) -> Vec<u8> {
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: ccos\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(len) = body_len {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {len}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Reads a status line, headers and the body as framed by the headers.
pub(crate) fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<Response> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let status = match status {
        Some(status) if version.starts_with("HTTP/1.") => status,
        _ => return Err(bad_data(format!("status line {status_line:?}"))),
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| bad_data(format!("header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let body = if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if header(&headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        read_chunked(reader)?
    } else if let Some(len) = header(&headers, "content-length") {
        let len: u64 = len.parse().map_err(|_| bad_data(format!("Content-Length {len:?}")))?;
        if len > MAX_BODY_BYTES {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        reader.take(len).read_to_end(&mut body)?;
        if (body.len() as u64) < len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the answer's body ended early"));
        }
        body
    } else {
        // No framing: the body runs to the end of the stream.
        let mut body = Vec::new();
        reader.take(MAX_BODY_BYTES + 1).read_to_end(&mut body)?;
        if body.len() as u64 > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body
    };
    Ok(Response { status, headers, body })
}

/// A chunked body: hex size lines (extensions ignored), data, CRLF, up to a
/// zero-size chunk and the trailers after it.
fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad_data(format!("chunk size line {line:?}")))?;
        if size == 0 {
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() as u64 + size > MAX_BODY_BYTES {
            return Err(too_large());
        }
        let before = body.len();
        reader.take(size).read_to_end(&mut body)?;
        if ((body.len() - before) as u64) < size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the answer ended inside a chunk"));
        }
        if !read_line(reader)?.is_empty() {
            return Err(bad_data("no CRLF after a chunk's data".to_owned()));
        }
    }
}

fn bad_data(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Marks the I/O error for an oversized answer, so it maps to its own variant.
#[derive(Debug, thiserror::Error)]
#[error("the answer is larger than {MAX_BODY_BYTES} bytes")]
struct BodyTooLarge;

fn too_large() -> io::Error {
    io::Error::other(BodyTooLarge)
}

/// One line without its CRLF; an error at EOF, where a line was due.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    // Bounded, so a server that never sends a newline cannot exhaust memory.
    if reader.take(64 * 1024).read_until(b'\n', &mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the supervisor closed the connection early"));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad_data("a line of the answer's head is not UTF-8".to_owned()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// Serves one connection on a real Unix socket in a temp dir: reads the
    /// request (head and Content-Length body), then writes `parts` with a
    /// short pause between them. The thread's result is the request as read.
    pub(crate) fn serve(parts: Vec<Vec<u8>>) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                request.push_str(&line);
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            request.push_str(&String::from_utf8(body).unwrap());
            for part in parts {
                conn.write_all(&part).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            request
        });
        (dir, path, server)
    }

    fn parse(raw: &[u8]) -> io::Result<Response> {
        read_response(&mut &raw[..], "GET")
    }

    #[test]
    fn reads_content_length_bodies() {
        let r = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nApi-Version: 1\r\n\r\n{}\r\nextra").unwrap();
        assert_eq!((r.status, r.header("API-VERSION"), &r.body[..]), (200, Some("1"), &b"{}\r\n"[..]));
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn reads_chunked_bodies_with_extensions_and_trailers() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n5;x=1\r\nde\nfg\r\n0\r\nT: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde\nfg");
        let e = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("chunk size"), "{e}");
        let e = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("CRLF"), "{e}");
    }

    #[test]
    fn reads_to_eof_without_framing_and_nothing_for_204() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n\r\nto the end").unwrap().body, b"to the end");
        assert_eq!(parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().body, b"");
    }

    #[test]
    fn refuses_what_is_not_http_or_too_big() {
        let e = parse(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("status line"), "{e}");
        let e = parse(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("header line"), "{e}");
        let e =
            parse(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_BODY_BYTES + 1).as_bytes()).unwrap_err();
        assert!(matches!(TransportError::from_io(e, Duration::ZERO), TransportError::TooLarge));
    }

    #[test]
    fn sends_json_and_reads_chunks_over_a_real_socket() {
        let (_dir, path, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            b"2\r\n{}\r\n".to_vec(),
            b"0\r\n\r\n".to_vec(),
        ]);
        let r = Transport::new(&path).request("POST", "/v1/x", Some(b"{\"a\":1}"), Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"{}"[..]));
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /v1/x HTTP/1.1\r\n"), "{request:?}");
        assert!(request.contains("Content-Type: application/json\r\nContent-Length: 7\r\n"), "{request:?}");
        assert!(request.ends_with("\r\n\r\n{\"a\":1}"), "{request:?}");
    }

    #[test]
    fn a_silent_server_is_a_timeout_and_a_missing_socket_names_the_path() {
        let (_dir, path, server) = serve(vec![b"HTTP/1.1 200 OK\r\n".to_vec(), vec![]]);
        let e = Transport::new(&path).request("GET", "/", None, Duration::from_millis(5)).unwrap_err();
        assert!(matches!(e, TransportError::Timeout { .. }), "{e:?}");
        server.join().unwrap();

        let e =
            Transport::new("/nonexistent/agent.sock").request("GET", "/", None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, TransportError::Connect { .. }));
        assert!(
            e.to_string().contains("/nonexistent/agent.sock") && e.to_string().contains("CCOS_AGENT_SOCKET"),
            "{e}"
        );
    }
}
