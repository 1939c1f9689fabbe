//! What a request path means, and the filter's own read-only endpoints.

use serde_json::json;

use crate::config::{public_view, Config, Tenant};
use crate::reply::Reply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'p> {
    Health,
    Tenants,
    TenantInfo(&'p str),
    /// A request for the tenant's backend.
    Proxy(&'p str),
    /// RFC 9728 metadata of `/{tenant}{rest}`, at the path-inserted well-known URL.
    ProtectedResource {
        tenant: &'p str,
        rest: &'p str,
    },
    /// The connect pages of a tenant: `/connect/{tenant}{page}`.
    Connect {
        tenant: &'p str,
        page: &'p str,
    },
    NoTenant,
}

/// Route by path: the first segment names the tenant (Envoy's route strips it afterwards).
pub fn route<'p>(method: &str, path: &'p str) -> Route<'p> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let rest = path.strip_prefix('/').unwrap_or(path);
    let (first, tail) = match rest.split_once('/') {
        Some((f, t)) => (f, Some(t)),
        None => (rest, None),
    };
    let read = method == "GET" || method == "HEAD";
    if let (".well-known", Some(tail)) = (first, tail) {
        if let Some(resource) = tail.strip_prefix("oauth-protected-resource/") {
            let (tenant, rest) = match resource.find('/') {
                Some(i) => resource.split_at(i),
                None => (resource, ""),
            };
            if read && !tenant.is_empty() {
                return Route::ProtectedResource { tenant, rest };
            }
        }
    }
    if let ("connect", Some(tail)) = (first, tail) {
        if let Some(i) = tail.find('/') {
            let (tenant, page) = tail.split_at(i);
            if !tenant.is_empty() {
                return Route::Connect { tenant, page };
            }
        }
    }
    match (first, tail) {
        ("", _) => Route::NoTenant,
        ("health", None) if read => Route::Health,
        ("tenants", None) if read => Route::Tenants,
        (tenant, Some("info")) if read => Route::TenantInfo(tenant),
        (tenant, _) => Route::Proxy(tenant),
    }
}

/// `GET /health`: per tenant, whether signing keys are loaded (`keys_loaded` is told by the
/// caller, which can see shared data).
pub fn health(config: &Config, keys_loaded: &dyn Fn(usize) -> bool) -> Reply {
    let mut all = true;
    let tenants: serde_json::Map<String, serde_json::Value> = config
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let loaded = keys_loaded(i);
            all &= loaded;
            (t.id.clone(), json!({"keys_loaded": loaded}))
        })
        .collect();
    let status = if all { "ok" } else { "degraded" };
    Reply::json(200, &json!({"status": status, "tenants": tenants}))
}

/// The protected resource `/{tenant}{rest}` under `base` (the public URL of the gateway).
pub fn resource_url(base: &str, tenant: &str, rest: &str) -> String {
    format!("{base}/{tenant}{rest}")
}

/// Where the metadata of that resource is (RFC 9728 3.1: well-known path inserted before it).
pub fn metadata_url(base: &str, tenant: &str, rest: &str) -> String {
    format!("{base}/.well-known/oauth-protected-resource/{tenant}{rest}")
}

/// RFC 9728 protected resource metadata: tells an MCP client which authorization server
/// issues tokens for this resource and with which scopes.
pub fn protected_resource(t: &Tenant, base: &str, rest: &str) -> Reply {
    let mut scopes: Vec<&String> = t.scopes.read.iter().chain(&t.scopes.write).collect();
    scopes.dedup();
    Reply::json(
        200,
        &json!({
            "resource": resource_url(base, &t.id, rest),
            "authorization_servers": [t.issuer],
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": t.name,
        }),
    )
}

pub fn tenants(config: &Config) -> Reply {
    Reply::json(
        200,
        &json!({"tenants": config.tenants.iter().map(public_view).collect::<Vec<_>>()}),
    )
}

pub fn tenant_info(config: &Config, id: &str) -> Option<Reply> {
    config.tenant(id).map(|t| Reply::json(200, &public_view(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/health"), Route::Health);
        assert_eq!(route("GET", "/tenants?x=1"), Route::Tenants);
        assert_eq!(route("GET", "/github/info"), Route::TenantInfo("github"));
        assert_eq!(route("POST", "/github/info"), Route::Proxy("github"));
        assert_eq!(route("GET", "/github/user"), Route::Proxy("github"));
        assert_eq!(route("GET", "/github"), Route::Proxy("github"));
        assert_eq!(route("GET", "/"), Route::NoTenant);
        assert_eq!(route("GET", "//x"), Route::NoTenant);
        assert_eq!(route("POST", "/health"), Route::Proxy("health"));
        assert_eq!(
            route("GET", "/.well-known/oauth-protected-resource/github/mcp?x"),
            Route::ProtectedResource {
                tenant: "github",
                rest: "/mcp"
            }
        );
        assert_eq!(
            route("GET", "/.well-known/oauth-protected-resource/github"),
            Route::ProtectedResource {
                tenant: "github",
                rest: ""
            }
        );
        assert_eq!(
            route("GET", "/connect/github/start?id=x"),
            Route::Connect {
                tenant: "github",
                page: "/start"
            }
        );
        assert_eq!(
            route("POST", "/connect/github/accounts/delete"),
            Route::Connect {
                tenant: "github",
                page: "/accounts/delete"
            }
        );
        assert_eq!(route("GET", "/connect/github"), Route::Proxy("connect"));
        assert_eq!(
            route("GET", "/.well-known/oauth-protected-resource/"),
            Route::Proxy(".well-known")
        );
    }
}
