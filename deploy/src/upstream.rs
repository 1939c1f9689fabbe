//! What a deployment must connect: the outside origins the filter calls (issuer JWKS or
//! discovery, the Auth0 domain) under the cluster names the tenants file gives them, each
//! tenant's backend, and the environment variables holding secrets.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;
use tvp_core::config::Url;

use crate::tenants::{JsonPath, Problem};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn from_url(url: &Url) -> Option<Origin> {
        let tls = url.scheme == "https";
        Origin::from_authority(&url.authority, tls)
    }

    fn from_authority(authority: &str, tls: bool) -> Option<Origin> {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        Some(Origin {
            tls,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// An IP literal cannot be named by SNI or resolved by DNS.
    pub fn is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// A `cluster` field of the tenants file and the origin the filter reaches through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUse {
    pub path: JsonPath,
    pub name: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub tenant: String,
    pub origin: Origin,
    /// The backend URL's path, ending with `/`: what `/{tenant}/` is rewritten to.
    pub prefix: String,
}

/// Everything a renderer needs, read from a tenants document that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub doc: Value,
    pub clusters: Vec<ClusterUse>,
    pub backends: Vec<Backend>,
    /// Names of the environment variables the plugin reads secrets from, sorted.
    pub env_keys: Vec<String>,
}

impl Plan {
    /// One entry per cluster name (the first use decides; [`problems`] refuses conflicts).
    pub fn distinct_clusters(&self) -> Vec<&ClusterUse> {
        let mut seen = BTreeSet::new();
        self.clusters
            .iter()
            .filter(|c| seen.insert(c.name.clone()))
            .collect()
    }

    /// One entry per outside origin, in order of first use.
    pub fn distinct_origins(&self) -> Vec<&Origin> {
        let mut seen = BTreeSet::new();
        self.clusters
            .iter()
            .map(|c| &c.origin)
            .filter(|o| seen.insert((*o).clone()))
            .collect()
    }
}

/// The Envoy cluster of a tenant's backend.
pub fn backend_cluster(tenant: &str) -> String {
    format!("backend_{tenant}")
}

fn url_at(doc: &Value, path: &JsonPath) -> Option<Url> {
    path.get(doc)
        .and_then(Value::as_str)
        .and_then(|s| Url::parse(s).ok())
}

/// Every http(s) authority the file names with its scheme: how a bare Auth0 domain is reached.
fn plain_http_authorities(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in doc["tenants"].as_array().into_iter().flatten() {
        for v in [
            &t["issuer"],
            &t["jwks"]["url"],
            &t["backend"],
            &t["connect"]["login_url"],
        ] {
            if let Some(url) = v.as_str().and_then(|s| Url::parse(s).ok()) {
                if url.scheme == "http" {
                    out.insert(url.authority);
                }
            }
        }
    }
    out
}

/// The plan of a validated document; errors name what cannot be deployed.
pub fn plan(doc: &Value) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut clusters = Vec::new();
    let mut backends = Vec::new();
    let mut env_keys = BTreeSet::new();
    let plain = plain_http_authorities(doc);
    let tenants = doc["tenants"].as_array().cloned().unwrap_or_default();
    for (i, t) in tenants.iter().enumerate() {
        let at = JsonPath::root().key("tenants").index(i);
        let id = t["id"].as_str().unwrap_or_default().to_string();
        // JWKS: the URL if given, else discovery on the issuer's host.
        let jwks_url = at.dotted("jwks.url");
        let source = if t["jwks"]["url"].is_string() {
            jwks_url
        } else {
            at.key("issuer")
        };
        match url_at(doc, &source).and_then(|u| Origin::from_url(&u)) {
            Some(origin) => clusters.push(ClusterUse {
                path: at.dotted("jwks.cluster"),
                name: t["jwks"]["cluster"].as_str().unwrap_or_default().into(),
                origin,
            }),
            None => problems.push(Problem::new(source, "not an http(s) URL")),
        }
        let vault_cluster = t["vault"]["cluster"].as_str().unwrap_or_default();
        if t["vault"]["type"] == "auth0" {
            // The Auth0 domain has no scheme: plain HTTP only where the file itself says so
            // (the local sim), TLS otherwise.
            let domain = t["vault"]["domain"].as_str().unwrap_or_default();
            let tls = !plain.contains(domain);
            match Origin::from_authority(domain, tls) {
                Some(origin) => clusters.push(ClusterUse {
                    path: at.dotted("vault.cluster"),
                    name: vault_cluster.into(),
                    origin,
                }),
                None => problems.push(Problem::new(at.dotted("vault.domain"), "not host[:port]")),
            }
        } else {
            // Okta backends name their token endpoints by URL: the IdP's, and for Cross App
            // Access the resource authorization server's (its own cluster, or the vault's).
            let resource_cluster = t["vault"]["resource_cluster"]
                .as_str()
                .unwrap_or(vault_cluster);
            for (field, name) in [
                ("token_url", vault_cluster),
                ("resource_token_url", resource_cluster),
            ] {
                let path = at.dotted(&format!("vault.{field}"));
                if path.get(doc).is_none() {
                    continue;
                }
                match url_at(doc, &path).and_then(|u| Origin::from_url(&u)) {
                    Some(origin) => clusters.push(ClusterUse {
                        path,
                        name: name.into(),
                        origin,
                    }),
                    None => problems.push(Problem::new(path, "not an http(s) URL")),
                }
            }
        }
        match url_at(doc, &at.key("backend")) {
            Some(url) => match Origin::from_url(&url) {
                Some(origin) => {
                    let path = url.path_and_query.split('?').next().unwrap_or("/");
                    let prefix = format!("{}/", path.trim_end_matches('/'));
                    backends.push(Backend {
                        tenant: id,
                        origin,
                        prefix,
                    });
                }
                None => problems.push(Problem::new(at.key("backend"), "bad port")),
            },
            None => problems.push(Problem::new(at.key("backend"), "not an http(s) URL")),
        }
        collect_env(t, &at, &mut env_keys, &mut problems);
    }
    collect_env(
        &doc["settings"],
        &JsonPath::root().key("settings"),
        &mut env_keys,
        &mut problems,
    );

    // A cluster name is one origin: Envoy has one endpoint set per name.
    for (n, c) in clusters.iter().enumerate() {
        if let Some(first) = clusters[..n]
            .iter()
            .find(|f| f.name == c.name && f.origin != c.origin)
        {
            problems.push(Problem::new(
                c.path.clone(),
                format!(
                    "cluster '{}' reaches {} here but {} at {}",
                    c.name, c.origin, first.origin, first.path
                ),
            ));
        }
        if let Some(b) = backends
            .iter()
            .find(|b| backend_cluster(&b.tenant) == c.name)
        {
            problems.push(Problem::new(
                c.path.clone(),
                format!(
                    "cluster '{}' is the name of tenant '{}''s backend cluster",
                    c.name, b.tenant
                ),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        doc: doc.clone(),
        clusters,
        backends,
        env_keys: env_keys.into_iter().collect(),
    })
}

/// Every `client_secret_env`, `resource_client_secret_env` and `private_key_env` anywhere in a tenant (vault, connect).
/// The fields naming an environment variable of the Wasm VM (secrets and keys).
const ENV_FIELDS: [&str; 4] = [
    "client_secret_env",
    "resource_client_secret_env",
    "private_key_env",
    "sealing_key_env",
];

fn collect_env(v: &Value, at: &JsonPath, keys: &mut BTreeSet<String>, problems: &mut Vec<Problem>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let p = at.key(k);
                match (k.as_str(), child.as_str()) {
                    (field, Some(name)) if ENV_FIELDS.contains(&field) && is_env_name(name) => {
                        keys.insert(name.to_string());
                    }
                    (field, _) if ENV_FIELDS.contains(&field) => problems.push(Problem::new(
                        p,
                        "not a usable environment variable name ([A-Za-z_][A-Za-z0-9_]*, as Envoy and Kubernetes need)",
                    )),
                    _ => collect_env(child, &p, keys, problems),
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                collect_env(child, &at.index(i), keys, problems);
            }
        }
        _ => {}
    }
}

fn is_env_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 256
}

/// Deployment problems of a document the filter accepts.
pub fn problems(doc: &Value) -> Vec<Problem> {
    plan(doc).err().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use serde_json::json;

    #[test]
    fn the_example_plan() {
        let plan = plan(&example()).unwrap();
        let sim = Origin {
            tls: false,
            host: "127.0.0.1".into(),
            port: 9000,
        };
        assert_eq!(plan.clusters.len(), 4);
        assert!(plan
            .clusters
            .iter()
            .all(|c| c.name == "sim_control" && c.origin == sim));
        assert_eq!(plan.distinct_clusters().len(), 1);
        assert_eq!(plan.distinct_origins(), vec![&sim]);
        assert_eq!(
            plan.env_keys,
            vec!["GITHUB_VAULT_CLIENT_SECRET", "TVP_SEALING_KEY"]
        );
        assert_eq!(plan.backends[0].tenant, "github");
        assert_eq!(plan.backends[0].prefix, "/");
        assert_eq!(plan.backends[1].origin.port, 9001);
        assert_eq!(
            plan.clusters[1].path.to_string(),
            "$.tenants[0].vault.cluster"
        );
    }

    #[test]
    fn https_origins_and_bare_domains() {
        let doc = with_auth0();
        let plan = plan(&doc).unwrap();
        let auth0 = Origin {
            tls: true,
            host: "acme.us.auth0.com".into(),
            port: 443,
        };
        assert_eq!(plan.clusters[0].origin, auth0);
        assert_eq!(plan.clusters[1].origin, auth0);
        assert_eq!(plan.backends[0].prefix, "/v3/");
        assert!(plan.backends[0].origin.tls);
        assert_eq!(auth0.to_string(), "https://acme.us.auth0.com:443");
    }

    #[test]
    fn one_cluster_name_for_two_origins_is_refused() {
        let mut doc = example();
        doc["tenants"][1]["vault"]["domain"] = json!("other.example:9000");
        let problems = plan(&doc).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            "$.tenants[1].vault.cluster: cluster 'sim_control' reaches https://other.example:9000 here but http://127.0.0.1:9000 at $.tenants[0].jwks.cluster"
        );
    }

    #[test]
    fn backend_cluster_names_are_reserved() {
        let mut doc = example();
        doc["tenants"][0]["jwks"]["cluster"] = json!("backend_google");
        assert_eq!(plan(&doc).unwrap_err().len(), 1);
    }

    #[test]
    fn secret_variables_anywhere_and_their_names() {
        let mut doc = example();
        doc["tenants"][1]["vault"]["client_secret_env"] = json!("GOOGLE_SECRET");
        doc["tenants"][1]["connect"] = json!({"client_secret_env": "CONNECT_SECRET"});
        assert_eq!(
            plan(&doc).unwrap().env_keys,
            vec![
                "CONNECT_SECRET",
                "GITHUB_VAULT_CLIENT_SECRET",
                "GOOGLE_SECRET",
                "TVP_SEALING_KEY"
            ]
        );
        doc["tenants"][1]["vault"]["client_secret_env"] = json!("google-secret");
        let problems = plan(&doc).unwrap_err();
        assert_eq!(
            problems[0].path.to_string(),
            "$.tenants[1].vault.client_secret_env"
        );
    }
}
