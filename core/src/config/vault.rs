//! The `vault` section of a tenant: which vault brokers its downstream tokens (Auth0, Okta
//! STS, Cross App Access), with the fields each one needs and nothing else.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    cluster_name, header_name, is_authority, is_scope_char, present, printable, require_text,
    schema, Endpoint, EnvVar, Found, ResourceAuth, SubjectTokenType, Upstream, Url, VaultBackend,
    VaultConfig,
};
use crate::crypto::signing::{SigningAlg, SigningKey};
use crate::secret::Secret;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawVault {
    #[serde(rename = "type", deserialize_with = "present")]
    kind: Option<String>,
    #[serde(deserialize_with = "present")]
    cluster: Option<String>,
    domain: Option<String>,
    #[serde(deserialize_with = "present")]
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    #[serde(deserialize_with = "present")]
    connection: Option<String>,
    subject_token_type: Option<String>,
    subject_token_header: Option<String>,
    login_hint_claim: Option<String>,
    connect_required_errors: Option<Vec<String>>,
    // Okta backends (okta-sts, id-jag).
    token_url: Option<String>,
    private_key_env: Option<String>,
    key_id: Option<String>,
    resource: Option<String>,
    audience: Option<String>,
    scopes: Option<Vec<String>>,
    resource_token_url: Option<String>,
    resource_cluster: Option<String>,
    resource_client_id: Option<String>,
    resource_as: Option<String>,
    resource_client_secret: Option<String>,
    resource_client_secret_env: Option<String>,
}

/// A valid vault section, with what a deployment needs to know of it.
pub(super) struct Vault {
    pub config: VaultConfig,
    /// The clusters of its call-outs: the Auth0 domain's, or the token endpoints'.
    pub upstreams: Vec<Upstream>,
    pub env_vars: Vec<EnvVar>,
}

const KINDS: [&str; 3] = ["auth0", "okta-sts", "id-jag"];

/// Fields of one vault type only. A field of another type is refused: a typo must not be
/// silently ignored.
fn used_by(field: &str, kind: &str) -> bool {
    match field {
        "domain"
        | "client_secret"
        | "client_secret_env"
        | "login_hint_claim"
        | "connect_required_errors" => kind == "auth0",
        "token_url" | "private_key_env" | "key_id" | "resource" => kind != "auth0",
        _ => kind == "id-jag",
    }
}

pub(super) fn validate_vault(
    raw: &RawValue,
    env: &dyn Fn(&str) -> Option<String>,
    found: &mut Found,
) -> Option<Vault> {
    let (raw, shape) = schema::object::<RawVault>(raw, found, "vault")?;
    if !shape.clean() {
        return None;
    }
    let before = found.len();
    let field = |f: &str| format!("vault.{f}");
    let kind = shape.required(found, "type", raw.kind.clone()).filter(|k| {
        let known = KINDS.contains(&k.as_str());
        if !known {
            found.add(
                "vault.type",
                "must be \"auth0\", \"okta-sts\" or \"id-jag\"",
            );
        }
        known
    });
    let cluster = shape
        .required(found, "cluster", raw.cluster.clone())
        .and_then(|c| found.check("vault.cluster", cluster_name(&c)));
    let client_id = shape
        .required(found, "client_id", raw.client_id.clone())
        .filter(|c| found.check("vault.client_id", require_text(c)).is_some());
    let connection = shape
        .required(found, "connection", raw.connection.clone())
        .filter(|c| found.check("vault.connection", require_text(c)).is_some());
    if let Some(claim) = &raw.login_hint_claim {
        found.check("vault.login_hint_claim", require_text(claim));
    }
    let login_hint_claim = raw.login_hint_claim.clone();
    let connect_required_errors = match raw.connect_required_errors.clone() {
        None => vec![
            "federated_connection_refresh_token_not_found".into(),
            "tokenset_not_found".into(),
        ],
        Some(list) => {
            if list.is_empty() {
                found.add("vault.connect_required_errors", "must not be empty");
            }
            list
        }
    };
    let kind = kind?;
    let kind = kind.as_str();
    let foreign = found.len();
    for (name, set) in [
        ("domain", raw.domain.is_some()),
        ("client_secret", raw.client_secret.is_some()),
        ("client_secret_env", raw.client_secret_env.is_some()),
        ("login_hint_claim", raw.login_hint_claim.is_some()),
        (
            "connect_required_errors",
            raw.connect_required_errors.is_some(),
        ),
        ("token_url", raw.token_url.is_some()),
        ("private_key_env", raw.private_key_env.is_some()),
        ("key_id", raw.key_id.is_some()),
        ("resource", raw.resource.is_some()),
        ("audience", raw.audience.is_some()),
        ("scopes", raw.scopes.is_some()),
        ("resource_token_url", raw.resource_token_url.is_some()),
        ("resource_cluster", raw.resource_cluster.is_some()),
        ("resource_client_id", raw.resource_client_id.is_some()),
        ("resource_as", raw.resource_as.is_some()),
        (
            "resource_client_secret",
            raw.resource_client_secret.is_some(),
        ),
        (
            "resource_client_secret_env",
            raw.resource_client_secret_env.is_some(),
        ),
    ] {
        if set && !used_by(name, kind) {
            found.add(
                &field(name),
                format!("is not used by vault type \"{kind}\""),
            );
        }
    }
    if found.len() > foreign {
        // A field of another vault type: the rest would be checked against the wrong type.
        return None;
    }
    let subject_token_type = match (kind, raw.subject_token_type.as_deref()) {
        (_, None | Some("access_token")) => Some(SubjectTokenType::AccessToken),
        ("auth0", Some("refresh_token")) => Some(SubjectTokenType::RefreshToken),
        ("okta-sts" | "id-jag", Some("id_token")) => Some(SubjectTokenType::IdToken),
        ("auth0", Some(_)) => {
            found.add(
                "vault.subject_token_type",
                "must be access_token or refresh_token",
            );
            None
        }
        _ => {
            found.add(
                "vault.subject_token_type",
                "must be access_token or id_token",
            );
            None
        }
    };
    let subject_token_header = subject_token_type.and_then(|t| {
        subject_token_header(t, raw.subject_token_header.as_deref())
            .map_err(|m| found.add("vault.subject_token_header", m))
            .ok()
    });
    let mut env_vars = Vec::new();
    for (name, value) in [
        ("vault.client_secret_env", &raw.client_secret_env),
        ("vault.private_key_env", &raw.private_key_env),
        (
            "vault.resource_client_secret_env",
            &raw.resource_client_secret_env,
        ),
    ] {
        if let Some(v) = value {
            env_vars.push(EnvVar {
                field: name,
                name: v.clone(),
            });
        }
    }
    let backend = match kind {
        "auth0" => auth0(raw, cluster.as_deref(), env, found),
        _ => okta(raw, kind, cluster.as_deref(), env, found),
    };
    if found.len() > before {
        return None;
    }
    let (domain, backend, upstreams) = backend?;
    Some(Vault {
        config: VaultConfig {
            cluster: cluster?,
            domain,
            client_id: client_id?,
            connection: connection?,
            subject_token_type: subject_token_type?,
            subject_token_header: subject_token_header?,
            login_hint_claim,
            connect_required_errors,
            backend,
        },
        upstreams,
        env_vars,
    })
}

/// The request header carrying the subject token, for the subject token type.
fn subject_token_header(
    kind: SubjectTokenType,
    header: Option<&str>,
) -> Result<Option<String>, &'static str> {
    match (kind, header) {
        (SubjectTokenType::RefreshToken, Some(h)) => header_name(h).map(Some),
        (SubjectTokenType::RefreshToken, None) => {
            Err("required when subject_token_type is refresh_token")
        }
        (SubjectTokenType::IdToken, Some(h)) => match header_name(h)? {
            h if h == "authorization" => {
                Err("must not be authorization (the agent's bearer token travels there)")
            }
            h => Ok(Some(h)),
        },
        // Okta "user access" takes the user's ID token for the agent's own client, which the
        // agent holds next to its access token; without a header there is nothing to send.
        (SubjectTokenType::IdToken, None) => Err(
            "required when subject_token_type is id_token (the request header carrying the user's ID token for the agent's client)",
        ),
        (_, Some(_)) => Err("only used with subject_token_type refresh_token or id_token"),
        (_, None) => Ok(None),
    }
}

/// A backend with its vault domain and the upstreams it calls.
type Backend = (String, VaultBackend, Vec<Upstream>);

fn auth0(
    raw: RawVault,
    cluster: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    found: &mut Found,
) -> Option<Backend> {
    let domain = raw.domain.unwrap_or_default();
    let domain_ok = is_authority(&domain);
    if !domain_ok {
        found.add(
            "vault.domain",
            "must be a host name with an optional port, without scheme or path",
        );
    }
    let client_secret = resolve_secret(raw.client_secret, raw.client_secret_env, env)
        .map_err(|(f, m)| found.add(&format!("vault.{f}"), m))
        .ok()?;
    if !domain_ok {
        return None;
    }
    // The domain has no scheme: the deployment decides how it is reached.
    let upstream = Upstream {
        field: "vault.cluster",
        cluster: cluster?.to_string(),
        tls: None,
        authority: domain.clone(),
    };
    Some((
        domain,
        VaultBackend::Auth0 { client_secret },
        vec![upstream],
    ))
}

fn okta(
    raw: RawVault,
    kind: &str,
    cluster: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    found: &mut Found,
) -> Option<Backend> {
    let before = found.len();
    let token = endpoint(cluster.unwrap_or_default(), raw.token_url.as_deref())
        .map_err(|m| found.add("vault.token_url", m))
        .ok();
    let key = signing_key(raw.private_key_env.as_deref(), raw.key_id.as_deref(), env)
        .map_err(|(f, m)| found.add(&format!("vault.{f}"), m))
        .ok();
    if kind == "okta-sts" {
        let resource = raw.resource.unwrap_or_default();
        found.check("vault.resource", require_text(&resource));
        let (token, key) = (token?, key?);
        if found.len() > before {
            return None;
        }
        let upstreams = vec![upstream("vault.cluster", &token)];
        let domain = token.authority.clone();
        return Some((
            domain,
            VaultBackend::OktaSts {
                token,
                key,
                resource,
            },
            upstreams,
        ));
    }
    let audience = raw.audience.unwrap_or_default();
    let audience_ok = found
        .check("vault.audience", Url::parse(&audience))
        .is_some();
    let scopes = raw.scopes.unwrap_or_default();
    for bad in scopes
        .iter()
        .filter(|s| s.is_empty() || !s.bytes().all(is_scope_char))
    {
        found.add(
            "vault.scopes",
            format!("'{}' is not a valid scope token", printable(bad)),
        );
    }
    let (resource_cluster_field, resource_cluster) = match &raw.resource_cluster {
        Some(c) => (
            "vault.resource_cluster",
            found.check("vault.resource_cluster", cluster_name(c)),
        ),
        None => ("vault.cluster", cluster.map(str::to_string)),
    };
    let resource_token = endpoint(
        resource_cluster.as_deref().unwrap_or_default(),
        raw.resource_token_url.as_deref(),
    )
    .map_err(|m| found.add("vault.resource_token_url", m))
    .ok();
    let resource_client_id = raw.resource_client_id.unwrap_or_default();
    found.check(
        "vault.resource_client_id",
        require_text(&resource_client_id),
    );
    if let Some(r) = &raw.resource {
        found.check("vault.resource", require_text(r));
    }
    let (token, key, resource_token) = (token?, key?, resource_token?);
    if !audience_ok {
        return None;
    }
    let resource_auth = resource_auth(
        raw.resource_as.as_deref(),
        &audience,
        &resource_token,
        &key,
        (raw.resource_client_secret, raw.resource_client_secret_env),
        env,
    )
    .map_err(|(f, m)| found.add(&format!("vault.{f}"), m))
    .ok()?;
    if found.len() > before {
        return None;
    }
    let upstreams = vec![
        upstream("vault.cluster", &token),
        upstream(resource_cluster_field, &resource_token),
    ];
    let domain = token.authority.clone();
    Some((
        domain,
        VaultBackend::IdJag {
            token,
            key,
            audience,
            scopes,
            resource: raw.resource,
            resource_token,
            resource_client_id,
            resource_auth,
        },
        upstreams,
    ))
}

/// The cluster a token endpoint is reached through, named by `field`.
fn upstream(field: &'static str, e: &Endpoint) -> Upstream {
    Upstream {
        field,
        cluster: e.cluster.clone(),
        tls: Some(e.url.starts_with("https://")),
        authority: e.authority.clone(),
    }
}

/// How the JWT bearer leg authenticates, by the kind of resource authorization server.
/// Okta custom AS: `private_key_jwt`, `aud` = its token endpoint
/// (https://developer.okta.com/docs/guides/ai-agent-token-exchange/authserver/main/).
/// Auth0: `client_secret`, or `private_key_jwt` with `aud` = `https://{domain}/` signed RS256,
/// RS384 or PS256 only
/// (https://auth0.com/docs/get-started/authentication-and-authorization-flow/authenticate-with-private-key-jwt,
/// https://auth0.com/docs/api/authentication/cross-app-access/get-token).
fn resource_auth(
    resource_as: Option<&str>,
    audience: &str,
    resource_token: &Endpoint,
    key: &SigningKey,
    (secret, secret_env): (Option<String>, Option<String>),
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResourceAuth, (&'static str, String)> {
    let has_secret = secret.is_some() || secret_env.is_some();
    match resource_as.unwrap_or("okta") {
        "okta" if has_secret => Err((
            if secret.is_some() {
                "resource_client_secret"
            } else {
                "resource_client_secret_env"
            },
            "an Okta resource authorization server authenticates AI agents with private_key_jwt only (set resource_as to \"auth0\" for an Auth0 one)".into(),
        )),
        "okta" => Ok(ResourceAuth::PrivateKeyJwt {
            audience: resource_token.url.clone(),
        }),
        "auth0" => {
            // Auth0's issuer is exactly `https://{domain}/`, and its token endpoint lives there.
            let issuer = Url::parse(audience).map_err(|m| ("audience", m.to_string()))?;
            if issuer.path_and_query != "/" || !audience.ends_with('/') {
                return Err((
                    "audience",
                    "for resource_as \"auth0\" must be the tenant's issuer https://{domain}/ (with the trailing slash)".into(),
                ));
            }
            if resource_token.url != format!("{audience}oauth/token") {
                return Err((
                    "resource_token_url",
                    format!(
                        "for resource_as \"auth0\" must be {}oauth/token (the same domain as audience)",
                        printable(audience)
                    ),
                ));
            }
            if has_secret {
                let secret = resolve_secret(secret, secret_env, env).map_err(|(f, m)| {
                    (
                        if f == "client_secret" {
                            "resource_client_secret"
                        } else {
                            "resource_client_secret_env"
                        },
                        m.replace("client_secret", "resource_client_secret"),
                    )
                })?;
                return Ok(ResourceAuth::ClientSecret(secret));
            }
            if key.alg != SigningAlg::Rs256 {
                return Err((
                    "private_key_env",
                    "Auth0 accepts client assertions signed RS256, RS384 or PS256 only: use an RSA key, or resource_client_secret_env".into(),
                ));
            }
            Ok(ResourceAuth::PrivateKeyJwt {
                audience: audience.to_string(),
            })
        }
        _ => Err(("resource_as", "must be \"okta\" or \"auth0\"".into())),
    }
}

/// A token endpoint from its absolute URL.
fn endpoint(cluster: &str, url: Option<&str>) -> Result<Endpoint, &'static str> {
    let url_text = url.ok_or("missing")?;
    let parsed = Url::parse(url_text)?;
    Ok(Endpoint {
        cluster: cluster.to_string(),
        authority: parsed.authority,
        path: parsed.path_and_query,
        url: url_text.to_string(),
    })
}

/// The client-assertion key: PEM from an environment variable of the Wasm VM, never inline.
fn signing_key(
    env_name: Option<&str>,
    kid: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SigningKey, (&'static str, String)> {
    let name = env_name.ok_or(("private_key_env", "missing".to_string()))?;
    let kid = kid.ok_or(("key_id", "missing".to_string()))?;
    require_text(kid).map_err(|m| ("key_id", m.to_string()))?;
    let pem = env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
        (
            "private_key_env",
            format!(
                "environment variable '{}' is not set in Envoy's environment (the wasm filter also needs it in vm_config.environment_variables)",
                printable(name)
            ),
        )
    })?;
    SigningKey::from_pem(&pem, kid).map_err(|m| ("private_key_env", m.to_string()))
}

/// A client secret given inline or by the name of an environment variable of the Wasm VM.
pub(super) fn resolve_secret(
    inline: Option<String>,
    env_name: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, (&'static str, String)> {
    match (inline, env_name) {
        (Some(_), Some(_)) => Err((
            "client_secret",
            "give client_secret or client_secret_env, not both".into(),
        )),
        (None, None) => Err((
            "client_secret",
            "missing (give client_secret or client_secret_env)".into(),
        )),
        (Some(s), None) if s.is_empty() => Err(("client_secret", "must not be empty".into())),
        (Some(s), None) => Ok(Secret::new(s)),
        (None, Some(name)) => match env(&name) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err((
                "client_secret_env",
                format!(
                    "environment variable '{}' is not set in Envoy's environment (the wasm filter also needs it in vm_config.environment_variables)",
                    printable(&name)
                ),
            )),
        },
    }
}
