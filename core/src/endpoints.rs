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
    /// Dot segments or an encoded `.`, `/` or `\\`: Envoy's router and the backend could read
    /// such a path differently from the filter (outside the tenant's prefix), so it is refused.
    BadPath,
}

/// Whether a path (without its query) is one Envoy's router, the backend and the filter all
/// read the same: no `.` or `..` segment, no encoded `.`, `/` or `\\`, no `\\`.
/// The rendered Envoy configuration normalises paths first; this holds wherever it does not.
pub fn is_plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !path.contains('\\')
        && !["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
        && !path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Whether the request's `:authority` may be served: any without `settings.hosts`.
pub fn host_allowed(config: &Config, authority: &str) -> bool {
    config
        .settings
        .hosts
        .as_ref()
        .is_none_or(|h| h.allows(authority))
}

/// Route by path: the first segment names the tenant (Envoy's route strips it afterwards).
pub fn route<'p>(method: &str, path: &'p str) -> Route<'p> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    if !is_plain_path(path) {
        return Route::BadPath;
    }
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

/// Split an absolute URL into its origin (`scheme://authority`) and path.
fn origin_and_path(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

/// The tenant's resource that a request for `path` is, or lies under (the longest such).
/// `origin` is the gateway's public origin when known; without it, paths alone decide.
pub fn covering_resource<'t>(t: &'t Tenant, origin: Option<&str>, path: &str) -> Option<&'t str> {
    t.resources
        .iter()
        .map(|r| (r.as_str(), origin_and_path(r)))
        .filter(|(_, (o, _))| origin.is_none_or(|want| want == *o))
        .filter(|(_, (_, p))| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .max_by_key(|(_, (_, p))| p.len())
        .map(|(r, _)| r)
}

/// The tenant's resource whose metadata is at `/.well-known/oauth-protected-resource{path}`:
/// RFC 9728 section 3.3 wants the metadata's `resource` identical to that URL's resource, so
/// only an exact match is served.
pub fn resource_at<'t>(t: &'t Tenant, origin: Option<&str>, path: &str) -> Option<&'t str> {
    covering_resource(t, origin, path).filter(|r| origin_and_path(r).1 == path)
}

/// Where the metadata of `resource` is (RFC 9728 section 3.1: the well-known path inserted
/// between the host and the resource's path).
pub fn metadata_url(resource: &str) -> String {
    let (origin, path) = origin_and_path(resource);
    format!("{origin}/.well-known/oauth-protected-resource{path}")
}

/// The scopes a 401 asks a client to get. For a named resource (an MCP endpoint, used with
/// POST and GET alike) every scope of the tenant, so one sign-in serves the whole session;
/// elsewhere, what the request's method needs.
pub fn challenge_scope(t: &Tenant, method: &str, named_resource: bool) -> String {
    if !named_resource {
        return crate::policy::required_scopes(&t.scopes, method).join(" ");
    }
    all_scopes(t).join(" ")
}

/// Every scope of the tenant, read then write, each once.
fn all_scopes(t: &Tenant) -> Vec<&str> {
    let mut all: Vec<&str> = Vec::new();
    for s in t.scopes.read.iter().chain(&t.scopes.write) {
        if !all.contains(&s.as_str()) {
            all.push(s);
        }
    }
    all
}

/// RFC 9728 protected resource metadata: tells an MCP client which authorization server
/// issues tokens for `resource` and with which scopes.
pub fn protected_resource(t: &Tenant, resource: &str) -> Reply {
    let scopes = all_scopes(t);
    Reply::json(
        200,
        &json!({
            "resource": resource,
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

    fn tenant(resources: &[&str]) -> Tenant {
        let doc = &crate::testing::example_json();
        let env = crate::testing::with_sealing_key(&|_| Some("s".to_string()));
        let mut t = crate::config::parse(doc.as_bytes(), &env)
            .map(|c| c.tenants[0].clone())
            .unwrap_or_else(|e| panic!("{e}"));
        t.resources = resources.iter().map(|r| r.to_string()).collect();
        t
    }

    #[test]
    fn the_resource_of_a_request_is_the_longest_that_covers_it() {
        let t = tenant(&[
            "https://gw/github",
            "https://gw/github/mcp",
            "https://b/github/mcp",
        ]);
        let gw = Some("https://gw");
        assert_eq!(
            covering_resource(&t, gw, "/github/mcp"),
            Some("https://gw/github/mcp")
        );
        assert_eq!(
            covering_resource(&t, gw, "/github/mcp/x"),
            Some("https://gw/github/mcp")
        );
        assert_eq!(
            covering_resource(&t, gw, "/github/mcpx"),
            Some("https://gw/github")
        );
        assert_eq!(
            covering_resource(&t, Some("https://b"), "/github/user"),
            None
        );
        assert_eq!(
            covering_resource(&t, Some("https://c"), "/github/mcp"),
            None
        );
        // Metadata only for the exact resource (RFC 9728 section 3.3).
        assert_eq!(
            resource_at(&t, gw, "/github/mcp"),
            Some("https://gw/github/mcp")
        );
        assert_eq!(resource_at(&t, gw, "/github/mcp/x"), None);
        assert_eq!(resource_at(&t, Some("https://b"), "/github"), None);
        assert_eq!(resource_at(&tenant(&[]), gw, "/github"), None);
    }

    #[test]
    fn a_named_resource_asks_for_every_scope_other_paths_for_their_methods() {
        let t = tenant(&["https://gw/github/mcp"]);
        assert_eq!(
            challenge_scope(&t, "POST", true),
            "github:read github:write"
        );
        assert_eq!(challenge_scope(&t, "POST", false), "github:write");
        assert_eq!(challenge_scope(&t, "GET", false), "github:read");
    }

    #[test]
    fn metadata_urls_insert_the_well_known_path_after_the_host() {
        assert_eq!(
            metadata_url("https://gw.example.com:8443/github/mcp"),
            "https://gw.example.com:8443/.well-known/oauth-protected-resource/github/mcp"
        );
        let t = tenant(&["https://gw/github/mcp"]);
        let r = protected_resource(&t, "https://gw/github/mcp");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(body["resource"], "https://gw/github/mcp");
        assert_eq!(body["authorization_servers"][0], t.issuer);
    }

    #[test]
    fn dot_segments_and_encoded_separators_are_refused_before_routing() {
        for bad in [
            "/github/../x",
            "/github/./x",
            "/..",
            "/github/..",
            "/github/%2e%2e/x",
            "/github/%2E%2E/x",
            "/github/%2F..%2Fx",
            "/github%2fx",
            "/github/.%2e/x",
            "/github/x%5c..%5cy",
            "/github/x\\..\\y",
            "/connect/github/../../x",
            "/.well-known/oauth-protected-resource/github/../x",
        ] {
            assert_eq!(route("GET", bad), Route::BadPath, "{bad}");
        }
        // Dots inside a segment and in the query are ordinary.
        for good in [
            "/github/a..b/.x/x.",
            "/github/user?next=/../x%2e",
            "/github/...",
        ] {
            assert!(
                is_plain_path(good.split('?').next().unwrap_or("")),
                "{good}"
            );
            assert_eq!(route("GET", good), Route::Proxy("github"), "{good}");
        }
    }

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
