//! Verified tokens shared by every worker, for a host whose shared data is one store for all
//! workers (the native module): a token's signature is checked once per process, not once per
//! worker. Each worker's own cache stays in front ([`crate::cache::VerifiedTokens`]); this
//! record is read only when it misses, and written after a check succeeds. It holds the
//! token's checked claims under the keyed digest of the token (never the token itself), in
//! the namespace of the configuration that checked it: a configuration pushed since (another
//! issuer, audience or key source) never trusts a check it did not make. Lifetimes (`exp`,
//! `nbf`) are checked again on every use, as for the worker's own cache.

use std::rc::Rc;

use super::Worker;
use crate::cache::Principal;
use crate::host::Host;
use crate::jwt::Claims;

/// The record of a token (by digest) verified for tenant `tenant` under `namespace`.
pub fn key(namespace: &str, tenant: usize, digest: u128) -> String {
    format!("tvp/v1/vt/{namespace}/{tenant}/{digest:032x}")
}

pub fn encode(claims: &Claims) -> Vec<u8> {
    serde_json::to_vec(claims).unwrap_or_default()
}

pub fn decode(bytes: &[u8]) -> Option<Claims> {
    serde_json::from_slice(bytes).ok()
}

impl Worker {
    /// A token another worker verified (this worker's cache missed): its caller, now cached
    /// here too. `None` without shared verified tokens.
    pub(super) fn verified_elsewhere(
        &mut self,
        host: &dyn Host,
        tenant: usize,
        digest: u128,
    ) -> Option<Rc<Principal>> {
        let namespace = self.shared_verified.as_deref()?;
        let bytes = host.shared_get(&key(namespace, tenant, digest)).0?;
        let claims = decode(&bytes)?;
        Some(self.remember_verified(tenant, digest, claims))
    }

    /// A token this worker verified: shared with the others (a refused write only costs them
    /// a check of their own).
    pub(super) fn share_verified(
        &self,
        host: &dyn Host,
        tenant: usize,
        digest: u128,
        claims: &Claims,
    ) {
        if let Some(namespace) = self.shared_verified.as_deref() {
            let _ = host.shared_set(&key(namespace, tenant, digest), &encode(claims), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_and_garbage_is_no_record() {
        let claims = Claims {
            iss: "https://issuer.example/".into(),
            sub: "alice".into(),
            aud: vec!["https://api.example".into()],
            exp: 1_800_000_600,
            nbf: None,
            iat: Some(1_800_000_000),
            scope: vec!["github:read".into()],
            scp: Vec::new(),
            permissions: Vec::new(),
            client_id: Some("agent".into()),
            login_hint: None,
            user: None,
        };
        assert_eq!(decode(&encode(&claims)), Some(claims));
        assert_eq!(decode(b"{\"sub\":\"alice\"}"), None);
        assert_eq!(decode(b"junk"), None);
    }

    #[test]
    fn records_are_apart_per_configuration_and_tenant() {
        let k = key("abc", 0, 7);
        assert!(k.starts_with("tvp/v1/vt/abc/0/"));
        assert_ne!(k, key("abd", 0, 7));
        assert_ne!(k, key("abc", 1, 7));
    }
}
