//! What the connect flow remembers between browser round trips, in shared data so that any
//! Envoy worker can handle the next step. Every record expires; the ones that carry a
//! single-use secret (`state`) are taken with a CAS write, so a replay finds nothing.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::flow::Host;
use crate::secret::{hex, sha256};

/// How long a connect link stays usable.
pub const LINK_TTL_MS: u64 = 10 * 60 * 1000;
/// How long a login or a provider consent may take.
pub const STATE_TTL_MS: u64 = 10 * 60 * 1000;
/// How long a browser stays logged in to the connect pages.
pub const SESSION_TTL_MS: u64 = 15 * 60 * 1000;

/// A connect link handed to an agent: bound to one user of one tenant.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub tenant: String,
    /// The user the sign-in must be: the agent token's `connect.user_claim`.
    pub sub: String,
    /// Shared-data key of the user's cached downstream token, cleared once connected.
    pub downstream_key: String,
    /// Okta's consent page for this user, shown only after the same-user check.
    #[serde(default)]
    pub interaction_uri: Option<String>,
    pub expires_ms: u64,
}

/// Where the browser goes after logging in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AfterLogin {
    /// Start connecting; the link, when the user came from an agent's connect link.
    Connect {
        link: Option<String>,
    },
    Accounts,
}

/// An authorization request in flight, sealed in the browser's login cookie.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub tenant: String,
    pub verifier: String,
    pub then: AfterLogin,
    pub expires_ms: u64,
}

/// A browser logged in to the connect pages (keyed by a hash of its cookie).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub tenant: String,
    pub sub: String,
    /// My Account API access token of this user.
    pub token: String,
    /// Anti-CSRF value of the forms this session is shown.
    pub csrf: String,
    pub expires_ms: u64,
}

/// A provider consent in flight (keyed by the `state` sent to `/connect`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub tenant: String,
    /// Key of the session that started it: the callback must come from the same browser.
    pub session_key: String,
    pub auth_session: String,
    pub verifier: String,
    pub redirect_uri: String,
    pub connection: String,
    pub link: Option<String>,
    pub downstream_key: String,
    pub expires_ms: u64,
}

// Tokens and verifiers must never reach a log through `{:?}`.
macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), " { [redacted] }"))
            }
        }
    )*};
}
redacted_debug!(Link, Login, Session, Consent);

pub trait Expiring {
    fn expires_ms(&self) -> u64;
}

macro_rules! expiring {
    ($($t:ty),*) => {$(
        impl Expiring for $t {
            fn expires_ms(&self) -> u64 {
                self.expires_ms
            }
        }
    )*};
}
expiring!(Link, Login, Session, Consent);

/// The per-user pointer to a live link, so repeated refusals reuse one link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPointer {
    pub id: String,
    pub expires_ms: u64,
}
expiring!(LinkPointer);

/// Record kinds, each its own key space.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Link,
    LinkOfUser,
    Session,
    Consent,
}

/// Shared-data key of a record. Ids are hashed: what a browser sends never becomes a key.
pub fn key(kind: Kind, id: &str) -> String {
    let space = match kind {
        Kind::Link => "link",
        Kind::LinkOfUser => "user",
        Kind::Session => "session",
        Kind::Consent => "consent",
    };
    format!("tvp/v1/cx/{space}/{}", hex(&sha256(id.as_bytes())[..16]))
}

pub fn put<T: Serialize>(host: &dyn Host, key: &str, record: &T) -> bool {
    let Ok(bytes) = serde_json::to_vec(record) else {
        return false;
    };
    let cas = host.shared_get(key).1;
    host.shared_set(key, &bytes, cas)
}

/// A live record, left in place.
pub fn get<T: DeserializeOwned + Expiring>(host: &dyn Host, key: &str, now_ms: u64) -> Option<T> {
    let bytes = host.shared_get(key).0?;
    let record: T = serde_json::from_slice(&bytes).ok()?;
    (record.expires_ms() > now_ms).then_some(record)
}

/// A live record, consumed: of two concurrent takers only one gets it.
pub fn take<T: DeserializeOwned + Expiring>(host: &dyn Host, key: &str, now_ms: u64) -> Option<T> {
    let (bytes, cas) = host.shared_get(key);
    let bytes = bytes.filter(|b| !b.is_empty())?;
    // proxy-wasm cannot delete shared data: an empty value marks it used.
    if !host.shared_set(key, b"", Some(cas?)) {
        return None;
    }
    let record: T = serde_json::from_slice(&bytes).ok()?;
    (record.expires_ms() > now_ms).then_some(record)
}

/// Forget a record (it reads as absent afterwards).
pub fn clear(host: &dyn Host, key: &str) {
    let cas = host.shared_get(key).1;
    if cas.is_some() {
        host.shared_set(key, b"", cas);
    }
}
