//! Bytes no client library would send, for the tests that are about exactly those bytes:
//! duplicate or malformed headers, odd request lines and paths (`..`, quotes, encoded CR LF),
//! a body sent after a pause, and one keep-alive connection held across a configuration push.
//! Everything else goes through [`crate::http`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::http::Response;

/// One request written as given (header lines in order, repeats kept), `host: localhost`
/// unless the caller names the host, `connection: close`; the body in a second write `after`
/// the headers when given (by then the filter has seen the headers alone).
pub fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    after: Option<Duration>,
) -> io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let host = match headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        true => "",
        false => "host: localhost\r\n",
    };
    let head = head(
        method,
        path,
        &format!("{host}connection: close\r\n"),
        headers,
        body,
    );
    stream.write_all(head.as_bytes())?;
    if let Some(pause) = after {
        stream.flush()?;
        std::thread::sleep(pause);
    }
    stream.write_all(body)?;
    read_response(&mut stream, method == "HEAD")
}

fn head(method: &str, path: &str, fixed: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\n{fixed}");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req
}

/// One HTTP/1.1 connection kept open across requests: a test that must know which connection
/// a request travels on (one accepted before a configuration push) holds it here.
pub struct KeepAlive {
    stream: TcpStream,
}

impl KeepAlive {
    pub fn open(port: u16) -> io::Result<KeepAlive> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive { stream })
    }

    /// Send one request on this connection and read its response.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Response> {
        let head = head(method, path, "host: localhost\r\n", headers, b"");
        self.stream.write_all(head.as_bytes())?;
        read_response(&mut self.stream, method == "HEAD")
    }

    /// Whether the server closed the connection (waits up to `within` for it).
    pub fn closed_by_server(&mut self, within: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(within));
        let mut buf = [0u8; 1];
        matches!(self.stream.read(&mut buf), Ok(0))
    }
}

/// Read one response: the head parsed by httparse, then as many body bytes as it announces
/// (a length, chunks, or none for HEAD, 1xx, 204 and 304). Envoy may keep the connection open
/// after its answer, so reading to the end of the stream would wait.
fn read_response(stream: &mut TcpStream, head_request: bool) -> io::Result<Response> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let (status, headers, start) = loop {
        if let Some(parsed) = parse_head(&raw)? {
            break parsed;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(eof(&raw));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let mut rest = raw.split_off(start);
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let no_body = head_request || status < 200 || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            if let Some(body) = dechunk(&rest)? {
                break body;
            }
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(eof(&rest));
            }
            rest.extend_from_slice(&buf[..n]);
        }
    } else {
        let length = match value("content-length") {
            Some(v) => v.trim().parse::<usize>().map_err(io::Error::other)?,
            None => usize::MAX,
        };
        while rest.len() < length {
            let n = stream.read(&mut buf)?;
            if n == 0 && length == usize::MAX {
                break;
            }
            if n == 0 {
                return Err(eof(&rest));
            }
            rest.extend_from_slice(&buf[..n]);
        }
        rest
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

type Head = (u16, Vec<(String, String)>, usize);

fn parse_head(raw: &[u8]) -> io::Result<Option<Head>> {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(raw) {
        Ok(httparse::Status::Complete(start)) => {
            let headers = response
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).trim().to_string();
                    (h.name.to_ascii_lowercase(), value)
                })
                .collect();
            Ok(Some((response.code.unwrap_or(0), headers, start)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(io::Error::other(format!(
            "bad response ({e}): {}",
            String::from_utf8_lossy(raw)
        ))),
    }
}

/// The body of a complete chunked message, or `None` while chunks are missing.
fn dechunk(data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match httparse::parse_chunk_size(&data[at..]) {
            Ok(httparse::Status::Complete((start, 0))) => {
                // The last chunk, then (no trailers) the final CRLF.
                let end = at + start;
                return Ok((data.len() >= end + 2).then_some(out));
            }
            Ok(httparse::Status::Complete((start, size))) => {
                let size = usize::try_from(size).map_err(io::Error::other)?;
                let from = at + start;
                if data.len() < from + size + 2 {
                    return Ok(None);
                }
                out.extend_from_slice(&data[from..from + size]);
                at = from + size + 2;
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(io::Error::other(format!("bad chunk: {e}"))),
        }
    }
}

fn eof(raw: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "connection closed before the answer was complete: {}",
            String::from_utf8_lossy(raw)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_joined_once_the_last_one_came() {
        let full = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(dechunk(full).unwrap().unwrap(), b"hello world");
        for cut in 0..full.len() - 1 {
            assert_eq!(dechunk(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn a_head_is_parsed_once_complete() {
        let raw =
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\ncontent-length: 2\r\n\r\n{}";
        assert!(parse_head(&raw[..20]).unwrap().is_none());
        let (status, headers, start) = parse_head(raw).unwrap().unwrap();
        assert_eq!(status, 401);
        assert_eq!(headers[0], ("www-authenticate".into(), "Bearer".into()));
        assert_eq!(&raw[start..], b"{}");
    }
}
