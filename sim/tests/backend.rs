//! The echo backend speaks HTTP/1.1 as Envoy expects of an upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use sim::{Sim, SimTenant};

#[test]
fn a_head_answer_has_no_body_so_the_next_answer_on_the_connection_is_intact() {
    let doc = json!({"tenants": [{
        "id": "github", "issuer": "https://tenant.example/", "audience": "https://api.example",
        "algorithms": ["RS256"], "scopes": {"read": ["r"], "write": ["w"]},
        "vault": {"type": "auth0", "domain": "tenant.example", "client_id": "cac",
                  "client_secret": "s", "connection": "github"},
    }]});
    let sim = Sim::start(SimTenant::from_filter_config(&doc).unwrap(), 0, 0).unwrap();
    let mut conn = TcpStream::connect(("127.0.0.1", sim.backend_port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // HEAD then OPTIONS on one keep-alive connection, as Envoy's upstream pool reuses it.
    conn.write_all(b"HEAD /user HTTP/1.1\r\nhost: b\r\n\r\nOPTIONS /user HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head_answer, rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head_answer.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        head_answer
            .to_ascii_lowercase()
            .contains("content-length: "),
        "{head_answer}"
    );
    // Right after the HEAD answer's headers comes the next status line, not a body.
    assert!(rest.starts_with("HTTP/1.1 200"), "{text}");
}
