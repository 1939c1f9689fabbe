//! What a deployment must connect: the outside origins the filter calls (issuer JWKS or
//! discovery, the Auth0 domain, Okta's token endpoints) under the cluster names the tenants
//! file gives them, each tenant's backend, and the environment variables holding secrets. All
//! of it is read from the filter's typed configuration of the file.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;
use tvp_core::config::{Config, Url};

use crate::tenants::{self, JsonPath, Problem};

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

    /// The `Host` a request to this origin carries: the port only when it is not the
    /// scheme's default.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The host of a plugin configuration's public URL, when it is a DNS name: the host name the
/// gateway's routes answer for.
pub fn public_hostname(config: &Value) -> Option<String> {
    let url = Url::parse(config["settings"]["public_base_url"].as_str()?).ok()?;
    Origin::from_url(&url)
        .filter(|o| !o.is_ip())
        .map(|o| o.host)
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
    /// The `backend` field it comes from (`$.tenants[i].backend`).
    pub path: JsonPath,
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

/// Every http(s) authority the file names with its scheme: how a bare Auth0 domain is reached.
fn plain_http_authorities(config: &Config) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in &config.tenants {
        let named = t
            .upstreams
            .iter()
            .filter_map(|u| u.tls.map(|tls| (tls, u.authority.clone())));
        let urls = [Some(&t.issuer), Some(&t.backend)]
            .into_iter()
            .chain([t.connect.as_ref().map(|c| &c.login_url)])
            .flatten()
            .filter_map(|u| Url::parse(u).ok())
            .map(|u| (u.scheme == "https", u.authority));
        for (tls, authority) in named.chain(urls) {
            if !tls {
                out.insert(authority);
            }
        }
    }
    out
}

/// The plan of a document, or every problem the filter or the deployment has with it.
pub fn plan(doc: &Value) -> Result<Plan, Vec<Problem>> {
    let config = tenants::parse_config(doc)
        .map_err(|errors| errors.iter().map(Problem::from_config).collect::<Vec<_>>())?;
    let mut problems = Vec::new();
    let mut clusters = Vec::new();
    let mut backends = Vec::new();
    let mut env_vars: Vec<(JsonPath, &str)> = Vec::new();
    let plain = plain_http_authorities(&config);
    for (i, t) in config.tenants.iter().enumerate() {
        let at = JsonPath::root().key("tenants").index(i);
        for u in &t.upstreams {
            // The Auth0 domain has no scheme: plain HTTP only where the file itself says so
            // (the local sim), TLS otherwise.
            let tls = u.tls.unwrap_or_else(|| !plain.contains(&u.authority));
            let path = at.dotted(u.field);
            match Origin::from_authority(&u.authority, tls) {
                Some(origin) => clusters.push(ClusterUse {
                    path,
                    name: u.cluster.clone(),
                    origin,
                }),
                None => problems.push(Problem::new(path, "not host[:port]")),
            }
        }
        match Url::parse(&t.backend).map(|url| (Origin::from_url(&url), url)) {
            Ok((Some(origin), url)) => {
                let path = url.path_and_query.split('?').next().unwrap_or("/");
                let prefix = format!("{}/", path.trim_end_matches('/'));
                backends.push(Backend {
                    path: at.key("backend"),
                    tenant: t.id.clone(),
                    origin,
                    prefix,
                });
            }
            Ok((None, _)) => problems.push(Problem::new(at.key("backend"), "bad port")),
            Err(_) => problems.push(Problem::new(at.key("backend"), "not an http(s) URL")),
        }
        env_vars.extend(
            t.env_vars
                .iter()
                .map(|e| (at.dotted(e.field), e.name.as_str())),
        );
    }
    if let Some(name) = &config.settings.sealing_key_env {
        let path = JsonPath::root().key("settings").key("sealing_key_env");
        env_vars.push((path, name));
    }
    let mut env_keys = BTreeSet::new();
    for (path, name) in env_vars {
        if is_env_name(name) {
            env_keys.insert(name.to_string());
        } else {
            problems.push(Problem::new(
                path,
                "not a usable environment variable name ([A-Za-z_][A-Za-z0-9_]*, as Envoy and Kubernetes need)",
            ));
        }
    }

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

fn is_env_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 256
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
    fn okta_token_endpoints_are_reached_through_the_clusters_that_name_them() {
        let mut doc: Value =
            serde_json::from_str(include_str!("../../tenants.example.json")).unwrap();
        let wiki = &mut doc["tenants"][3];
        wiki["vault"]["resource_cluster"] = json!("wiki_as");
        wiki["vault"]["resource_token_url"] = json!("https://wiki.example/oauth2/v1/token");
        let plan = plan(&doc).unwrap();
        let used: Vec<String> = plan
            .clusters
            .iter()
            .skip(4)
            .map(|c| format!("{} {} {}", c.path, c.name, c.origin))
            .collect();
        assert_eq!(
            used,
            [
                "$.tenants[2].jwks.cluster sim_control http://127.0.0.1:9000",
                "$.tenants[2].vault.cluster sim_control http://127.0.0.1:9000",
                "$.tenants[3].jwks.cluster sim_control http://127.0.0.1:9000",
                "$.tenants[3].vault.cluster sim_control http://127.0.0.1:9000",
                "$.tenants[3].vault.resource_cluster wiki_as https://wiki.example:443",
            ]
        );
        assert_eq!(
            plan.env_keys,
            [
                "GITHUB_VAULT_CLIENT_SECRET",
                "OKTA_AGENT_PRIVATE_KEY",
                "TVP_SEALING_KEY"
            ]
        );
    }

    #[test]
    fn secret_variables_anywhere_and_their_names() {
        let mut doc = example();
        let google = &mut doc["tenants"][1];
        google["vault"]
            .as_object_mut()
            .unwrap()
            .remove("client_secret");
        google["vault"]["client_secret_env"] = json!("GOOGLE_SECRET");
        google["connect"] = json!({"client_id": "web", "client_secret_env": "CONNECT_SECRET"});
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
