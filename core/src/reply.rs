//! Every refusal the filter can give, and its HTTP form, in one place.

use serde_json::json;

use crate::callout::DependencyFailure;
use crate::jwt::TokenError;

/// Why a request was not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deny {
    NoTenant,
    /// A path with dot segments or encoded separators (see `endpoints::is_plain_path`).
    BadPath,
    /// An `:authority` that is not one of `settings.hosts`.
    UnknownHost,
    UnknownTenant,
    /// No `Authorization` header at all: a bare challenge (RFC 6750 3.1).
    MissingToken,
    /// More than one credential, or a header that is not `Bearer <token>`.
    InvalidRequest(&'static str),
    InvalidToken(TokenError),
    InsufficientScope(Vec<String>),
    ConnectRequired {
        connection: String,
        tenant_name: String,
        /// Provider scopes the connection is asked for (empty: the connection's defaults).
        scopes: Vec<String>,
        /// Of those, the ones the connected account lacks (re-consent); empty when the
        /// account is not connected at all.
        missing_scopes: Vec<String>,
        /// Where the user connects the account, when the filter runs the flow (boxed: it
        /// keeps every refusal small).
        connect: Option<Box<ConnectLink>>,
        /// The vault's own consent page (Okta's `interaction_uri`): never answered, only
        /// remembered by a connect link of ours that checks the signed-in user.
        interaction_uri: Option<Box<str>>,
    },
    /// Signing keys could not be obtained.
    KeysUnavailable(DependencyFailure),
    VaultFailed(DependencyFailure),
    VaultMisconfigured,
    /// The resource's authorization server refused this access (Cross App Access).
    VaultForbidden,
    VaultRateLimited {
        retry_after_seconds: Option<u64>,
    },
    /// The tenant's budget of signature failures on this worker is spent (a forged-token
    /// flood): a token that would need a signature check waits until it refills.
    VerificationThrottled {
        retry_after_seconds: u64,
    },
}

/// Every refusal's counter name (`deny.<code>`; codes without one count as `deny.other`):
/// a host that defines its metrics up front defines these.
pub const DENY_METRICS: &[&str] = &[
    "deny.no_tenant",
    "deny.bad_path",
    "deny.unknown_host",
    "deny.unknown_tenant",
    "deny.missing_token",
    "deny.invalid_request",
    "deny.insufficient_scope",
    "deny.connect_required",
    "deny.jwks_unavailable",
    "deny.jwks_timeout",
    "deny.jwks_bad_answer",
    "deny.vault_unavailable",
    "deny.vault_timeout",
    "deny.vault_bad_answer",
    "deny.vault_misconfigured",
    "deny.vault_forbidden",
    "deny.vault_rate_limited",
    "deny.verification_throttled",
    "deny.token_too_large",
    "deny.token_malformed",
    "deny.token_header_unsupported",
    "deny.alg_not_allowed",
    "deny.unknown_kid",
    "deny.bad_signature",
    "deny.wrong_issuer",
    "deny.wrong_audience",
    "deny.token_expired",
    "deny.token_not_yet_valid",
    "deny.wrong_token_type",
    "deny.missing_sub",
    "deny.token_rejected",
    "deny.id_token_missing",
    "deny.id_token_invalid",
    "deny.other",
];

impl Deny {
    /// Stable reason code for the decision log and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Deny::NoTenant => "no_tenant",
            Deny::BadPath => "bad_path",
            Deny::UnknownHost => "unknown_host",
            Deny::UnknownTenant => "unknown_tenant",
            Deny::MissingToken => "missing_token",
            Deny::InvalidRequest(_) => "invalid_request",
            Deny::InvalidToken(e) => e.code(),
            Deny::InsufficientScope(_) => "insufficient_scope",
            Deny::ConnectRequired { .. } => "connect_required",
            Deny::KeysUnavailable(DependencyFailure::Unavailable) => "jwks_unavailable",
            Deny::KeysUnavailable(DependencyFailure::Timeout) => "jwks_timeout",
            Deny::KeysUnavailable(DependencyFailure::BadAnswer) => "jwks_bad_answer",
            Deny::VaultFailed(DependencyFailure::Unavailable) => "vault_unavailable",
            Deny::VaultFailed(DependencyFailure::Timeout) => "vault_timeout",
            Deny::VaultFailed(DependencyFailure::BadAnswer) => "vault_bad_answer",
            Deny::VaultMisconfigured => "vault_misconfigured",
            Deny::VaultForbidden => "vault_forbidden",
            Deny::VaultRateLimited { .. } => "vault_rate_limited",
            Deny::VerificationThrottled { .. } => "verification_throttled",
        }
    }
}

impl Deny {
    /// Counter name of this refusal: `deny.<reason code>`.
    pub fn metric(&self) -> &'static str {
        let code = self.code();
        DENY_METRICS
            .iter()
            .find(|m| m.strip_prefix("deny.") == Some(code))
            .copied()
            .unwrap_or("deny.other")
    }
}

/// A connect link: its opaque id (also the MCP elicitation id) and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectLink {
    pub id: String,
    pub url: String,
}

/// What an agent shows its user when an account must be connected, or connected again to
/// grant the scopes it lacks.
pub fn connect_message(connection: &str, missing_scopes: &[String]) -> String {
    if missing_scopes.is_empty() {
        format!("Authorization required to access the Token Vault: {connection}")
    } else {
        format!(
            "Authorization required to access the Token Vault: {connection} (grant the missing scopes: {})",
            missing_scopes.join(" ")
        )
    }
}

/// A local reply, ready for `send_http_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON-RPC answer whose `id` is `raw_id`, the request's own JSON text (a string or a
    /// number, already validated as one JSON value), spliced in as written: JSON-RPC ids must
    /// come back unchanged, and re-encoding a number may change it (`1.0`, `1e3`).
    pub fn json_with_raw_id(status: u32, body: &serde_json::Value, raw_id: &str) -> Reply {
        let mut reply = Reply::json(status, body);
        // `body` is an object: its text starts with `{`. Put the id first.
        let rest = if reply.body.len() > 2 { "," } else { "" };
        let mut text = format!("{{\"id\":{raw_id}{rest}").into_bytes();
        text.extend_from_slice(reply.body.get(1..).unwrap_or_default());
        reply.body = text;
        reply
    }

    pub fn json(status: u32, body: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![
                ("content-type", "application/json".into()),
                ("cache-control", "no-store".into()),
            ],
            body: body.to_string().into_bytes(),
        }
    }

    /// Add a header; control characters are dropped so no value can split the header block.
    fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers
            .push((name, value.chars().filter(|c| !c.is_control()).collect()));
        self
    }
}

/// Where a client learns how to get a token: RFC 6750 `realm` and RFC 9728 `resource_metadata`.
#[derive(Debug, Clone, Copy)]
pub struct Realm<'a> {
    /// The tenant id (or the filter's name without one).
    pub name: &'a str,
    /// URL of the protected resource metadata for the requested resource, when known.
    pub resource_metadata: Option<&'a str>,
    /// Scopes the request needs, announced on 401 so a client asks for them up front.
    pub scope: Option<&'a str>,
}

impl<'a> Realm<'a> {
    pub fn named(name: &'a str) -> Self {
        Realm {
            name,
            resource_metadata: None,
            scope: None,
        }
    }
}

/// The HTTP answer for a refusal.
pub fn deny_reply(deny: &Deny, realm: &Realm<'_>) -> Reply {
    let error = |status: u32, error: &str, description: &str| {
        Reply::json(
            status,
            &json!({"error": error, "error_description": description}),
        )
    };
    let dependency = |failure: DependencyFailure, what: &str| {
        let (status, text) = match failure {
            DependencyFailure::Unavailable => (503, "is unavailable"),
            DependencyFailure::Timeout => (504, "did not answer in time"),
            DependencyFailure::BadAnswer => (502, "gave an invalid answer"),
        };
        error(
            status,
            "temporarily_unavailable",
            &format!("The {what} {text}."),
        )
    };
    match deny {
        Deny::NoTenant => error(
            400,
            "invalid_request",
            "The first path segment must name a tenant.",
        ),
        Deny::BadPath => error(
            400,
            "invalid_request",
            "The path must not contain '.' or '..' segments or an encoded '.', '/' or '\\'.",
        ),
        // 421 Misdirected Request (RFC 9110 15.5.20): this gateway does not serve the host.
        Deny::UnknownHost => error(
            421,
            "misdirected_request",
            "This gateway does not serve this host.",
        ),
        Deny::UnknownTenant => error(404, "not_found", "No such tenant."),
        Deny::MissingToken => error(401, "unauthorized", "A bearer token is required.")
            .with_header("www-authenticate", challenge(realm, None)),
        Deny::InvalidRequest(why) => error(400, "invalid_request", why).with_header(
            "www-authenticate",
            challenge(realm, Some(("invalid_request", why, None))),
        ),
        Deny::InvalidToken(e) => error(401, "invalid_token", e.description()).with_header(
            "www-authenticate",
            challenge(realm, Some(("invalid_token", e.description(), None))),
        ),
        Deny::InsufficientScope(scopes) => {
            let scope = scopes.join(" ");
            let description = "The access token lacks a scope this request needs.";
            Reply::json(
                403,
                &json!({"error": "insufficient_scope", "error_description": description, "scope": scope}),
            )
            .with_header(
                "www-authenticate",
                challenge(realm, Some(("insufficient_scope", description, Some(&scope)))),
            )
        }
        // Deliberately no Bearer challenge: `invalid_token` would send a standard client back to
        // its authorization server in a loop, while the fix is connecting the account.
        // The body mirrors the Auth0 AI SDK's TokenVaultInterrupt so SDK front ends can reuse
        // their handling; `connect_uri` is where the user connects the account.
        Deny::ConnectRequired {
            connection,
            tenant_name,
            scopes,
            missing_scopes,
            connect,
            ..
        } => {
            let description = if missing_scopes.is_empty() {
                format!("The user has not connected their {connection} account for {tenant_name}.")
            } else {
                format!(
                    "The user's {connection} account for {tenant_name} lacks scopes: {}.",
                    missing_scopes.join(" ")
                )
            };
            let mut body = json!({
                "error": "connected_account_required",
                "error_description": description,
                "name": "AUTH0_AI_INTERRUPT",
                "code": "TOKEN_VAULT_ERROR",
                "message": connect_message(connection, missing_scopes),
                "connection": connection,
                "scopes": scopes,
                "requiredScopes": scopes,
                "authorizationParams": {},
                "behavior": "resume",
            });
            if let Some(link) = connect {
                body["connect_uri"] = json!(link.url);
            }
            if !missing_scopes.is_empty() {
                body["missingScopes"] = json!(missing_scopes);
            }
            Reply::json(403, &body).with_header("x-connect-required", connection.clone())
        }
        Deny::KeysUnavailable(f) => dependency(*f, "token issuer's key set"),
        Deny::VaultFailed(f) => dependency(*f, "token vault"),
        Deny::VaultMisconfigured => error(
            502,
            "server_error",
            "The token vault refused this gateway's credentials.",
        ),
        Deny::VaultForbidden => error(
            403,
            "access_denied",
            "The resource's authorization server does not allow this access.",
        ),
        Deny::VaultRateLimited {
            retry_after_seconds,
        } => {
            let reply = error(
                503,
                "temporarily_unavailable",
                "The token vault is rate limiting requests.",
            );
            match retry_after_seconds {
                Some(s) => reply.with_header("retry-after", s.to_string()),
                None => reply,
            }
        }
        // Not 401: the token may well be valid (it was not checked), and `invalid_token`
        // would send the client for a new one, which would wait here too. 503 with
        // `Retry-After` is the overload answer clients retry after (RFC 9110 15.6.4).
        Deny::VerificationThrottled {
            retry_after_seconds,
        } => error(
            503,
            "temporarily_unavailable",
            "Too many tokens with invalid signatures were sent to this resource; new tokens are checked again shortly.",
        )
        .with_header("retry-after", retry_after_seconds.to_string()),
    }
}

/// An RFC 6750 `WWW-Authenticate: Bearer` challenge with every value quote-escaped.
pub fn challenge(realm: &Realm<'_>, error: Option<(&str, &str, Option<&str>)>) -> String {
    let mut out = format!("Bearer realm=\"{}\"", quote(realm.name));
    if let Some(url) = realm.resource_metadata {
        out.push_str(&format!(", resource_metadata=\"{}\"", quote(url)));
    }
    if let Some((code, description, _)) = error {
        out.push_str(&format!(
            ", error=\"{}\", error_description=\"{}\"",
            quote(code),
            quote(description)
        ));
    }
    // The error's own scope (insufficient_scope) wins over the request's.
    if let Some(scope) = error.and_then(|(_, _, s)| s).or(realm.scope) {
        out.push_str(&format!(", scope=\"{}\"", quote(scope)));
    }
    out
}

/// Make text safe inside a quoted-string: escape `"` and `\`, drop control characters and
/// anything outside printable ASCII so no header can be split or forged.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'r>(r: &'r Reply, name: &str) -> Option<&'r str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn missing_token_gets_a_challenge_without_error() {
        let r = deny_reply(&Deny::MissingToken, &Realm::named("github"));
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"github\"")
        );
    }

    #[test]
    fn invalid_token_challenge_names_the_error() {
        let r = deny_reply(
            &Deny::InvalidToken(TokenError::Expired),
            &Realm::named("github"),
        );
        assert_eq!(r.status, 401);
        let h = header(&r, "www-authenticate").unwrap_or_default();
        assert!(
            h.starts_with("Bearer realm=\"github\", error=\"invalid_token\""),
            "{h}"
        );
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let r = deny_reply(
            &Deny::InsufficientScope(vec!["github:write".into()]),
            &Realm::named("github"),
        );
        assert_eq!(r.status, 403);
        assert!(header(&r, "www-authenticate")
            .unwrap_or_default()
            .contains("scope=\"github:write\""));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(body["scope"], "github:write");
    }

    #[test]
    fn connect_required_has_no_bearer_challenge() {
        let r = deny_reply(
            &Deny::ConnectRequired {
                connection: "github".into(),
                tenant_name: "GitHub".into(),
                scopes: vec!["repo".into()],
                missing_scopes: Vec::new(),
                connect: Some(Box::new(ConnectLink {
                    id: "abc".into(),
                    url: "https://gw/connect/github/start?id=abc".into(),
                })),
                interaction_uri: Some("https://okta.example/interact?s=1".into()),
            },
            &Realm::named("github"),
        );
        assert_eq!(r.status, 403);
        assert!(header(&r, "www-authenticate").is_none());
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(body["error"], "connected_account_required");
        assert_eq!(body["connection"], "github");
        assert_eq!(body["requiredScopes"], json!(["repo"]));
        // The vault's own consent URL is never answered: only the link of ours.
        assert!(!String::from_utf8_lossy(&r.body).contains("okta.example"));
        assert_eq!(
            body["connect_uri"],
            "https://gw/connect/github/start?id=abc"
        );
    }

    #[test]
    fn dependency_failures_map_to_5xx() {
        use DependencyFailure::*;
        for (f, status) in [(Unavailable, 503), (Timeout, 504), (BadAnswer, 502)] {
            assert_eq!(
                deny_reply(&Deny::VaultFailed(f), &Realm::named("t")).status,
                status
            );
            assert_eq!(
                deny_reply(&Deny::KeysUnavailable(f), &Realm::named("t")).status,
                status
            );
        }
        let r = deny_reply(
            &Deny::VaultRateLimited {
                retry_after_seconds: Some(7),
            },
            &Realm::named("t"),
        );
        assert_eq!((r.status, header(&r, "retry-after")), (503, Some("7")));
        let r = deny_reply(
            &Deny::VerificationThrottled {
                retry_after_seconds: 1,
            },
            &Realm::named("t"),
        );
        assert_eq!((r.status, header(&r, "retry-after")), (503, Some("1")));
        // No challenge: the token was not found invalid, and clients must not fetch another.
        assert!(header(&r, "www-authenticate").is_none());
    }

    #[test]
    fn resource_metadata_is_in_every_challenge() {
        let realm = Realm {
            name: "github",
            resource_metadata: Some("https://gw/.well-known/oauth-protected-resource/github/x\"y"),
            scope: Some("github:write"),
        };
        for deny in [
            Deny::MissingToken,
            Deny::InvalidToken(TokenError::Expired),
            Deny::InsufficientScope(vec!["s".into()]),
        ] {
            let r = deny_reply(&deny, &realm);
            let h = header(&r, "www-authenticate").unwrap_or_default();
            assert!(h.contains("resource_metadata=\"https://gw/.well-known/oauth-protected-resource/github/x\\\"y\""), "{h}");
        }
        assert_eq!(
            header(&deny_reply(&Deny::MissingToken, &realm), "www-authenticate"),
            Some("Bearer realm=\"github\", resource_metadata=\"https://gw/.well-known/oauth-protected-resource/github/x\\\"y\", scope=\"github:write\"")
        );
        // A missing scope names what is missing, not what the method needs.
        assert!(header(
            &deny_reply(&Deny::InsufficientScope(vec!["s".into()]), &realm),
            "www-authenticate"
        )
        .is_some_and(|h| h.ends_with(", scope=\"s\"")));
    }

    #[test]
    fn every_reason_has_its_own_counter() {
        let denials = [
            Deny::NoTenant,
            Deny::BadPath,
            Deny::UnknownHost,
            Deny::MissingToken,
            Deny::InvalidToken(TokenError::Expired),
            Deny::InvalidToken(TokenError::BadSignature),
            Deny::VaultFailed(DependencyFailure::Timeout),
            Deny::VaultRateLimited {
                retry_after_seconds: None,
            },
            Deny::VerificationThrottled {
                retry_after_seconds: 1,
            },
        ];
        for d in denials {
            assert_eq!(d.metric(), format!("deny.{}", d.code()));
        }
    }

    #[test]
    fn quoting_blocks_header_injection() {
        assert_eq!(quote("a\"b\\c\r\nd\u{7f}é"), "a\\\"b\\\\cd");
        let c = challenge(&Realm::named("x\"\r\nSet-Cookie: y"), None);
        assert!(!c.contains('\r') && !c.contains('\n'));
        assert_eq!(c, "Bearer realm=\"x\\\"Set-Cookie: y\"");
    }
}
