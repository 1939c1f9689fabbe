//! What the sim's HTTP tests share: one raw HTTP/1.1 exchange and its parsed reply.

#![allow(dead_code, clippy::unwrap_used)]

pub use sim::http::Fetched as Reply;

/// Send `method target` to the sim with `headers` (each a full `name: value` line set) and
/// `body`, on a connection of its own.
pub fn exchange(port: u16, method: &str, target: &str, headers: &str, body: &str) -> Reply {
    let pairs: Vec<(&str, &str)> = headers
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    sim::http::fetch(port, method, target, &pairs, body.as_bytes()).unwrap()
}
