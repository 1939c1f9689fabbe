//! ID tokens of the connect pages' sign-in: checked with the connect client's own algorithms,
//! issuer and audience, against the tenant's keys (Auth0) or the Okta org's.

use std::rc::Rc;

use super::{Host, Worker};
use crate::config::ConnectProvider;
use crate::jwks;

impl Worker {
    /// Check an ID token of the connect pages' sign-in for tenant `tenant`, issued to its
    /// connect client, and return its `sub`. Auth0's is signed by the tenant's issuer keys;
    /// Okta's by the org's (`org_keys`, the JWKS just fetched), its issuer the org.
    pub fn verify_id_token(
        &mut self,
        host: &dyn Host,
        tenant: usize,
        token: &str,
        org_keys: Option<&[u8]>,
    ) -> Option<String> {
        let now_ms = host.now_ms();
        let connect = self.config.tenants[tenant].connect.clone()?;
        let (keys, issuer) = match (&connect.provider, org_keys) {
            (ConnectProvider::Auth0 { .. }, None) => (
                self.keys_for(host, tenant, now_ms)?,
                self.config.tenants[tenant].issuer.clone(),
            ),
            (ConnectProvider::Okta { issuer, .. }, Some(jwks)) => {
                (Rc::new(jwks::parse_jwks(jwks).ok()?), issuer.clone())
            }
            _ => return None,
        };
        let s = &self.config.settings;
        // The connect client's own list: an agent allow-list of ES256 only must not make
        // the sign-in's RS256 ID tokens unverifiable (nor widen what agent tokens may use).
        let algorithms = &connect.id_token_algorithms;
        let jwt = crate::jwt::parse(token, s.max_token_bytes.max(16 * 1024), None).ok()?;
        let claims = &jwt.claims;
        let valid = algorithms.contains(&jwt.alg)
            && claims.iss == issuer
            && claims.aud.contains(&connect.client_id)
            && crate::jwt::check_lifetime(
                claims,
                (now_ms / 1000) as i64,
                s.clock_skew_seconds as i64,
            )
            .is_ok();
        if !valid {
            return None;
        }
        keys.verify(&jwt, self.verifier.as_ref()).ok()?;
        Some(jwt.claims.sub)
    }
}
