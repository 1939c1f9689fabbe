//! Sans-IO description of an HTTP call-out and its answer; `filter/` turns these into
//! `dispatch_http_call` and back.

use std::fmt;

use crate::secret::Redacted;

/// A request to send through an Envoy cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct CalloutRequest {
    pub cluster: String,
    pub method: &'static str,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

impl CalloutRequest {
    pub fn get(cluster: &str, authority: &str, path: &str) -> Self {
        CalloutRequest {
            cluster: cluster.to_string(),
            method: "GET",
            authority: authority.to_string(),
            path: path.to_string(),
            headers: vec![("accept", "application/json".into())],
            body: None,
        }
    }

    /// Every header a host sends: the pseudo-headers, the authority under the name the
    /// host's API takes (`:authority` in proxy-wasm, `host` in dynamic modules), then the
    /// request's own. The scheme is https: every origin the core calls is in production (the
    /// cluster's transport decides what is actually spoken).
    pub fn header_pairs<'a>(&'a self, authority_name: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut headers = vec![
            (":method", self.method),
            (":path", self.path.as_str()),
            (authority_name, self.authority.as_str()),
            (":scheme", "https"),
        ];
        headers.extend(self.headers.iter().map(|(n, v)| (*n, v.as_str())));
        headers
    }
}

/// Header values other than these may carry a credential (`authorization` with a client
/// secret, a bearer token), and bodies carry subject tokens and client secrets.
const PRINTABLE_HEADERS: [&str; 2] = ["accept", "content-type"];

impl fmt::Debug for CalloutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &dyn fmt::Debug)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown: &dyn fmt::Debug = if PRINTABLE_HEADERS.contains(name) {
                    value
                } else {
                    &"[redacted]"
                };
                (*name, shown)
            })
            .collect();
        f.debug_struct("CalloutRequest")
            .field("cluster", &self.cluster)
            .field("method", &self.method)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("headers", &headers)
            .field("body", &self.body.as_ref().map(|b| Redacted(b.len())))
            .finish()
    }
}

/// What came back. `body` is `None` when it was larger than allowed.
#[derive(Clone, PartialEq, Eq)]
pub struct CalloutResponse {
    /// `None` when the host gave no usable `:status` (reset, malformed).
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    /// `X-RateLimit-Reset`: when Auth0's standard rate limit resets (epoch seconds).
    pub rate_limit_reset: Option<String>,
    pub body: Option<Vec<u8>>,
}

/// The body is a token answer: never printed.
impl fmt::Debug for CalloutResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalloutResponse")
            .field("status", &self.status)
            .field("retry_after", &self.retry_after)
            .field("rate_limit_reset", &self.rate_limit_reset)
            .field("body", &self.body.as_ref().map(|b| Redacted(b.len())))
            .finish()
    }
}

/// How a dependency failed, mapped to the status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyFailure {
    /// Refused, reset, or the dependency said it is unavailable: 503.
    Unavailable,
    /// Slower than the call-out timeout: 504.
    Timeout,
    /// Answered, but with an error or garbage: 502.
    BadAnswer,
}

impl DependencyFailure {
    pub fn code(self) -> &'static str {
        match self {
            DependencyFailure::Unavailable => "unavailable",
            DependencyFailure::Timeout => "timeout",
            DependencyFailure::BadAnswer => "bad_answer",
        }
    }

    /// Classify a non-success status. Envoy itself answers a timed-out call-out with 504 and a
    /// refused or reset one with 503, so those two mean "could not reach it".
    pub fn from_status(status: Option<u16>) -> Self {
        match status {
            Some(504) => DependencyFailure::Timeout,
            Some(503) | None => DependencyFailure::Unavailable,
            _ => DependencyFailure::BadAnswer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_pairs_lead_with_the_pseudo_headers_and_the_hosts_authority_name() {
        let request = CalloutRequest::get("idp", "idp.example", "/jwks");
        assert_eq!(
            request.header_pairs("host"),
            [
                (":method", "GET"),
                (":path", "/jwks"),
                ("host", "idp.example"),
                (":scheme", "https"),
                ("accept", "application/json"),
            ]
        );
    }
}
