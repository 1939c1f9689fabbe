//! Ordinary HTTP/1.1 requests, through a real client (ureq): every status is an answer, not
//! an error; no redirect is followed (tests look at each one); nothing is added that the test
//! did not ask for (no user agent, `Accept` or compression), except `host: localhost` when the
//! test names no host. One request, one connection, `connection: close`, unless a test asks
//! for a [`Client`] that keeps connections.

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use ureq::http::{Method, Request};
use ureq::Agent;

/// One answer, header names in lower case, in the order received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Bodies larger than this are a broken test, not an answer to read whole.
const BODY_LIMIT: u64 = 64 * 1024 * 1024;

fn agent(idle_connections: usize) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        // Loopback only: never a proxy from the environment.
        .proxy(None)
        .user_agent("")
        .accept("")
        .accept_encoding("")
        .allow_non_standard_methods(true)
        .max_idle_connections(idle_connections)
        .max_idle_connections_per_host(idle_connections)
        .timeout_per_read(Some(Duration::from_secs(20)))
        .timeout_connect(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// One request to `127.0.0.1:port` on a new connection.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    static ONE_SHOT: OnceLock<Agent> = OnceLock::new();
    let agent = ONE_SHOT.get_or_init(|| agent(0));
    let mut with_close: Vec<(&str, &str)> = vec![("connection", "close")];
    with_close.extend_from_slice(headers);
    send(agent, port, method, path, &with_close, body)
}

/// Requests on kept-alive connections, as a client pool holds them: a connection the server
/// closed (`Connection: close`, as Envoy says after a 400) is replaced by a new one.
pub struct Client {
    agent: Agent,
    port: u16,
}

impl Client {
    pub fn keep_alive(port: u16) -> Client {
        Client {
            agent: agent(1),
            port,
        }
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        send(&self.agent, self.port, method, path, headers, body)
    }
}

fn send(
    agent: &Agent,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let invalid = |e: ureq::http::Error| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{method} {path}: {e} (bytes no client sends belong to testkit::raw)"),
        )
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| invalid(e.into()))?;
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(format!("http://127.0.0.1:{port}{path}"));
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        builder = builder.header("host", "localhost");
    }
    for (n, v) in headers {
        builder = builder.header(*n, *v);
    }
    // A length for every body and for every POST and PUT (an empty one says `0`), none for a
    // GET without one.
    let sized = !body.is_empty() || method == Method::POST || method == Method::PUT;
    let answer = if sized {
        agent.run(builder.body(body).map_err(invalid)?)
    } else {
        agent.run(builder.body(()).map_err(invalid)?)
    };
    let mut answer = answer.map_err(|e| io::Error::other(format!("{path}: {e}")))?;
    let headers = answer
        .headers()
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes());
            (n.as_str().to_string(), value.trim().to_string())
        })
        .collect();
    let body = answer
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_vec()
        .map_err(|e| io::Error::other(format!("{path}: body: {e}")))?;
    Ok(Response {
        status: answer.status().as_u16(),
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A loopback server that answers each connection's first request with `answer` and hands
    /// back the request bytes it got.
    fn server(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                raw.extend_from_slice(&buf[..n]);
            }
            // The body, if one was announced.
            let text = String::from_utf8_lossy(&raw).to_string();
            let split = text.find("\r\n\r\n").unwrap() + 4;
            let len = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            while raw.len() < split + len {
                let n = s.read(&mut buf).unwrap();
                raw.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).unwrap();
            raw
        });
        (port, got)
    }

    #[test]
    fn sends_only_what_the_test_asked_for() {
        let (port, got) = server(b"HTTP/1.1 204 No Content\r\n\r\n");
        let r = request(
            port,
            "GET",
            "/a?b=c",
            &[("x-one", "1"), ("x-one", "2")],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 204);
        let sent = String::from_utf8(got.join().unwrap()).unwrap();
        let mut lines: Vec<&str> = sent.split("\r\n").collect();
        assert_eq!(lines.remove(0), "GET /a?b=c HTTP/1.1");
        lines.sort();
        assert_eq!(
            lines,
            [
                "",
                "",
                "connection: close",
                "host: localhost",
                "x-one: 1",
                "x-one: 2"
            ]
        );
    }

    #[test]
    fn an_empty_post_says_its_length_and_a_named_host_is_kept() {
        let (port, got) = server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let r = request(port, "POST", "/f", &[("host", "gw.example")], b"").unwrap();
        assert_eq!(r.text(), "ok");
        let sent = String::from_utf8(got.join().unwrap()).unwrap();
        assert!(sent.contains("content-length: 0\r\n"), "{sent}");
        assert!(sent.contains("host: gw.example\r\n"), "{sent}");
        assert!(!sent.contains("localhost"), "{sent}");
    }

    #[test]
    fn errors_and_redirects_are_answers() {
        let (port, _) =
            server(b"HTTP/1.1 302 Found\r\nlocation: /next\r\ncontent-length: 0\r\n\r\n");
        let r = request(port, "GET", "/", &[], b"").unwrap();
        assert_eq!((r.status, r.header("Location")), (302, Some("/next")));
        let (port, _) = server(
            b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        );
        let r = request(port, "POST", "/", &[], b"body").unwrap();
        assert_eq!((r.status, r.json()), (401, serde_json::json!({})));
    }

    #[test]
    fn bytes_no_client_sends_are_refused_with_a_pointer_to_raw() {
        let e = request(1, "GET", "/", &[("x-evil", "a\r\nb: c")], b"").unwrap_err();
        assert!(e.to_string().contains("testkit::raw"), "{e}");
    }
}
