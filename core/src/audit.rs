//! The audit record of one decision: who asked (hashed), for which tenant, with which agent
//! client and scopes, what was decided and why, and where it went. One JSON line per request,
//! also handed to Envoy as filter state so an access log can carry it.

use serde::Serialize;

use crate::cache::Principal;
use crate::config::{ScopeClaim, Tenant};

/// The record's fields, in the order they are written (alphabetical, as before).
#[derive(Serialize)]
struct Record<'a> {
    client_id: Option<&'a str>,
    connection: Option<&'a str>,
    decision: &'static str,
    downstream_host: Option<&'a str>,
    reason: &'a str,
    scopes: Option<Vec<&'a str>>,
    sub: Option<&'a str>,
    tenant: Option<&'a str>,
}

/// What happened to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forwarded with the downstream credential.
    Allow,
    /// Answered by the filter; nothing forwarded.
    Deny,
    /// An MCP lifecycle or listing request of a user without the account: forwarded with no
    /// credential at all.
    Relay,
}

/// Build the JSON record. `principal` is known once the token verified; `reason` is the
/// stable reason code (`ok` when allowed). Written straight from borrowed fields: it runs for
/// every new token and every refusal.
pub fn record(
    tenant: Option<&Tenant>,
    principal: Option<&Principal>,
    decision: Decision,
    reason: &str,
) -> String {
    let forwarded = decision != Decision::Deny;
    let scopes: Option<Vec<&str>> = match (tenant, principal) {
        (Some(t), Some(p)) => Some(p.claims.scopes(&t.scopes.claims).collect()),
        (None, Some(p)) => Some(p.claims.scopes(&[ScopeClaim::Scope]).collect()),
        _ => None,
    };
    let record = Record {
        client_id: principal.and_then(|p| p.claims.client_id.as_deref()),
        connection: tenant.map(|t| t.vault.connection.as_str()),
        decision: match decision {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Relay => "relay",
        },
        downstream_host: tenant
            .filter(|_| forwarded)
            .map(|t| t.backend_authority.as_str()),
        reason,
        scopes,
        sub: principal.map(|p| p.sub_hash.as_str()),
        tenant: tenant.map(|t| t.id.as_str()),
    };
    // Serialising borrowed strings and a list of strings cannot fail.
    serde_json::to_string(&record).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::jwt::Claims;
    use serde_json::json;

    #[test]
    fn records_hold_no_raw_identity_and_stay_one_line() {
        let env = crate::testing::with_sealing_key(&|_| Some("x".into()));
        let cfg = config::parse(crate::testing::example_json().as_bytes(), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        let claims = Claims {
            iss: "i".into(),
            sub: "alice@example.com".into(),
            aud: vec![],
            exp: 0,
            nbf: None,
            iat: None,
            scope: vec!["github:read".into()],
            scp: vec![],
            permissions: vec![],
            client_id: Some("agent\n\"x".into()),
            login_hint: None,
            user: None,
        };
        let p = Principal::new(&cfg.tenants[0], claims);
        let line = record(Some(&cfg.tenants[0]), Some(&p), Decision::Allow, "ok");
        assert!(!line.contains('\n') && !line.contains("alice"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["tenant"], "github");
        assert_eq!(v["decision"], "allow");
        assert_eq!(v["sub"], p.sub_hash);
        assert_eq!(v["client_id"], "agent\n\"x");
        assert_eq!(v["scopes"], json!(["github:read"]));
        assert_eq!(v["connection"], "github");
        assert_eq!(v["downstream_host"], "127.0.0.1:9001");
        // Keys in alphabetical order, every one present (null when unknown): the shape access
        // logs and log pipelines already parse.
        let keys = [
            "client_id",
            "connection",
            "decision",
            "downstream_host",
            "reason",
            "scopes",
            "sub",
            "tenant",
        ];
        let at: Vec<Option<usize>> = keys
            .iter()
            .map(|k| line.find(&format!("\"{k}\":")))
            .collect();
        assert!(at.iter().all(Option::is_some), "{line}");
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{line}");
        let denied: serde_json::Value =
            serde_json::from_str(&record(None, None, Decision::Deny, "no_tenant"))
                .unwrap_or_default();
        assert_eq!(denied["decision"], "deny");
        assert!(denied["sub"].is_null() && denied["downstream_host"].is_null());
    }
}
