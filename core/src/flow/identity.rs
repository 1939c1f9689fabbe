//! The identity memo: the hashes derived from a user's identifiers (cache keys, the log label),
//! computed once per user and worker, so a new token of a known user costs no SHA-256.

use super::Worker;
use crate::cache::{self, Principal};
use crate::jwt::Claims;

/// A user seen before on this worker, with the hashes derived for them.
pub(super) struct Identity {
    tenant: usize,
    iss: String,
    sub: String,
    login_hint: Option<String>,
    hashes: cache::UserHashes,
}

impl Worker {
    /// The verified caller, reusing the hashes derived for the same user before: a new token
    /// of a known user costs no SHA-256.
    pub(super) fn principal(&mut self, tenant: usize, claims: Claims) -> Principal {
        let hint = claims.login_hint.as_deref().unwrap_or("");
        let digest = self.digest.of_parts(&[
            &(tenant as u64).to_le_bytes(),
            claims.iss.as_bytes(),
            claims.sub.as_bytes(),
            hint.as_bytes(),
        ]);
        if let Some(known) = self.identities.get(&digest) {
            // Equal fields, not just equal digests: one user's keys never serve another.
            if known.tenant == tenant
                && known.iss == claims.iss
                && known.sub == claims.sub
                && known.login_hint == claims.login_hint
            {
                return Principal::with_hashes(claims, known.hashes.clone());
            }
        }
        let hashes = cache::UserHashes::new(&self.config.tenants[tenant], &claims);
        if self.identities.len() >= self.config.settings.verified_token_cache_size.max(1) {
            self.identities.clear();
        }
        let entry = Identity {
            tenant,
            iss: claims.iss.clone(),
            sub: claims.sub.clone(),
            login_hint: claims.login_hint.clone(),
            hashes: hashes.clone(),
        };
        self.identities.insert(digest, entry);
        Principal::with_hashes(claims, hashes)
    }
}
