//! Least privilege: which scopes a request needs, chosen by its HTTP method.

use crate::config::ScopePolicy;
use crate::jwt::Claims;

/// The scopes a request with `method` must carry (all of them).
pub fn required_scopes<'p>(policy: &'p ScopePolicy, method: &str) -> &'p [String] {
    if policy.read_methods.iter().any(|m| m == method) {
        &policy.read
    } else {
        &policy.write
    }
}

/// The first required scope the token lacks, if any. Scope tokens match exactly, never as
/// substrings; with `write_implies_read`, holding every write scope satisfies a read.
pub fn missing_scope<'p>(
    policy: &'p ScopePolicy,
    method: &str,
    claims: &Claims,
) -> Option<&'p [String]> {
    let granted: Vec<&str> = claims.scopes(&policy.claims).collect();
    let holds_all = |needed: &[String]| needed.iter().all(|s| granted.contains(&s.as_str()));
    let needed = required_scopes(policy, method);
    if holds_all(needed) {
        return None;
    }
    let is_read = std::ptr::eq(needed, policy.read.as_slice());
    if is_read && policy.write_implies_read && holds_all(&policy.write) {
        return None;
    }
    Some(needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScopeClaim;

    fn policy() -> ScopePolicy {
        ScopePolicy {
            read: vec!["github:read".into()],
            write: vec!["github:write".into()],
            write_implies_read: false,
            read_methods: vec!["GET".into(), "HEAD".into(), "OPTIONS".into()],
            claims: vec![ScopeClaim::Scope, ScopeClaim::Scp, ScopeClaim::Permissions],
        }
    }

    fn claims(scope: &[&str], scp: &[&str], permissions: &[&str]) -> Claims {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Claims {
            iss: "i".into(),
            sub: "s".into(),
            aud: vec![],
            exp: 0,
            nbf: None,
            iat: None,
            scope: v(scope),
            scp: v(scp),
            permissions: v(permissions),
            client_id: None,
            login_hint: None,
            user: None,
        }
    }

    #[test]
    fn read_methods_need_read_scope() {
        let p = policy();
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert!(missing_scope(&p, m, &claims(&["github:read"], &[], &[])).is_none());
            assert!(missing_scope(&p, m, &claims(&["github:write"], &[], &[])).is_some());
        }
    }

    #[test]
    fn other_methods_need_write_scope() {
        let p = policy();
        for m in ["POST", "PUT", "PATCH", "DELETE", "PROPFIND"] {
            assert_eq!(
                missing_scope(&p, m, &claims(&["github:read"], &[], &[])),
                Some(&["github:write".to_string()][..])
            );
            assert!(missing_scope(&p, m, &claims(&[], &[], &["github:write"])).is_none());
        }
    }

    #[test]
    fn scopes_match_exactly_not_as_substrings() {
        let p = policy();
        assert!(missing_scope(
            &p,
            "GET",
            &claims(&["github:reader", "xgithub:read"], &[], &[])
        )
        .is_some());
    }

    #[test]
    fn write_implies_read_only_when_configured() {
        let mut p = policy();
        let c = claims(&[], &["github:write"], &[]);
        assert!(missing_scope(&p, "GET", &c).is_some());
        p.write_implies_read = true;
        assert!(missing_scope(&p, "GET", &c).is_none());
    }

    #[test]
    fn untrusted_claims_are_ignored() {
        let mut p = policy();
        p.claims = vec![ScopeClaim::Scope];
        assert!(
            missing_scope(&p, "GET", &claims(&[], &["github:read"], &["github:read"])).is_some()
        );
    }
}
