//! Sans-IO description of an HTTP call-out and its answer; `filter/` turns these into
//! `dispatch_http_call` and back.

/// A request to send through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// What came back. `body` is `None` when it was larger than allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutResponse {
    /// `None` when the host gave no usable `:status` (reset, malformed).
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    /// `X-RateLimit-Reset`: when Auth0's standard rate limit resets (epoch seconds).
    pub rate_limit_reset: Option<String>,
    pub body: Option<Vec<u8>>,
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
