//! What the connect flow remembers between browser round trips. Each record travels sealed
//! (`sealed`): a link in the agent's URL, the others in the browser's cookies; every one
//! expires. Nothing is kept in the gateway, so any replica takes the next step.

use serde::{Deserialize, Serialize};

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

/// A browser logged in to the connect pages, sealed in its session cookie.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random: what a consent in flight is bound to.
    pub id: String,
    pub tenant: String,
    pub sub: String,
    /// My Account API access token of this user.
    pub token: String,
    /// Anti-CSRF value of the forms this session is shown.
    pub csrf: String,
    pub expires_ms: u64,
}

/// A provider consent in flight, sealed in the browser's consent cookie.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub tenant: String,
    /// The session that started it: the callback must come from the same browser.
    pub session_id: String,
    /// The `state` sent to `/connect`: the callback must carry it back.
    pub state: String,
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
