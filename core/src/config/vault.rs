//! The `vault` section of a tenant: which vault brokers its downstream tokens (Auth0, Okta
//! STS, Cross App Access), with the fields each one needs and nothing else.

use serde::Deserialize;

use super::{
    cluster_name, header_name, is_authority, is_scope_char, printable, require_text, Endpoint,
    FieldError, ResourceAuth, SubjectTokenType, Url, VaultBackend, VaultConfig,
};
use crate::crypto::signing::{SigningAlg, SigningKey};
use crate::secret::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVault {
    #[serde(rename = "type")]
    kind: String,
    cluster: String,
    #[serde(default)]
    domain: Option<String>,
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    client_secret_env: Option<String>,
    connection: String,
    #[serde(default)]
    subject_token_type: Option<String>,
    #[serde(default)]
    subject_token_header: Option<String>,
    #[serde(default)]
    login_hint_claim: Option<String>,
    #[serde(default)]
    connect_required_errors: Option<Vec<String>>,
    // Okta backends (okta-sts, id-jag).
    #[serde(default)]
    token_url: Option<String>,
    #[serde(default)]
    private_key_env: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    resource_token_url: Option<String>,
    #[serde(default)]
    resource_cluster: Option<String>,
    #[serde(default)]
    resource_client_id: Option<String>,
    #[serde(default)]
    resource_as: Option<String>,
    #[serde(default)]
    resource_client_secret: Option<String>,
    #[serde(default)]
    resource_client_secret_env: Option<String>,
}

pub(super) fn validate_vault(
    raw: RawVault,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<VaultConfig, FieldError> {
    let field = |f: &str, m: &str| (format!("vault.{f}"), m.to_string());
    let cluster = cluster_name(&raw.cluster).map_err(|m| field("cluster", m))?;
    require_text(&raw.client_id).map_err(|m| field("client_id", m))?;
    require_text(&raw.connection).map_err(|m| field("connection", m))?;
    if let Some(claim) = &raw.login_hint_claim {
        require_text(claim).map_err(|m| field("login_hint_claim", m))?;
    }
    // Fields of one backend are refused on another: a typo must not be silently ignored.
    let present = |name: &'static str, set: bool| set.then_some(name);
    let auth0_only = [
        present("domain", raw.domain.is_some()),
        present("client_secret", raw.client_secret.is_some()),
        present("client_secret_env", raw.client_secret_env.is_some()),
        present("login_hint_claim", raw.login_hint_claim.is_some()),
        present(
            "connect_required_errors",
            raw.connect_required_errors.is_some(),
        ),
    ];
    let okta = [
        present("token_url", raw.token_url.is_some()),
        present("private_key_env", raw.private_key_env.is_some()),
        present("key_id", raw.key_id.is_some()),
    ];
    let id_jag_only = [
        present("audience", raw.audience.is_some()),
        present("scopes", raw.scopes.is_some()),
        present("resource_token_url", raw.resource_token_url.is_some()),
        present("resource_cluster", raw.resource_cluster.is_some()),
        present("resource_client_id", raw.resource_client_id.is_some()),
        present("resource_as", raw.resource_as.is_some()),
        present(
            "resource_client_secret",
            raw.resource_client_secret.is_some(),
        ),
        present(
            "resource_client_secret_env",
            raw.resource_client_secret_env.is_some(),
        ),
    ];
    let refuse = |fields: &[Option<&'static str>], kind: &str| match fields.iter().flatten().next()
    {
        Some(f) => Err(field(f, &format!("is not used by vault type \"{kind}\""))),
        None => Ok(()),
    };
    let kind = raw.kind.as_str();
    match kind {
        "auth0" => {
            refuse(&okta, kind)?;
            refuse(&[present("resource", raw.resource.is_some())], kind)?;
            refuse(&id_jag_only, kind)?;
        }
        "okta-sts" => {
            refuse(&auth0_only, kind)?;
            refuse(&id_jag_only, kind)?;
        }
        "id-jag" => {
            refuse(&auth0_only, kind)?;
        }
        _ => {
            return Err(field(
                "type",
                "must be \"auth0\", \"okta-sts\" or \"id-jag\"",
            ))
        }
    }
    let subject_token_type = match (kind, raw.subject_token_type.as_deref()) {
        (_, None | Some("access_token")) => SubjectTokenType::AccessToken,
        ("auth0", Some("refresh_token")) => SubjectTokenType::RefreshToken,
        ("okta-sts" | "id-jag", Some("id_token")) => SubjectTokenType::IdToken,
        ("auth0", Some(_)) => {
            return Err(field(
                "subject_token_type",
                "must be access_token or refresh_token",
            ))
        }
        _ => {
            return Err(field(
                "subject_token_type",
                "must be access_token or id_token",
            ))
        }
    };
    let subject_token_header = match (subject_token_type, raw.subject_token_header) {
        (SubjectTokenType::RefreshToken, Some(h)) => {
            Some(header_name(&h).map_err(|m| field("subject_token_header", m))?)
        }
        (SubjectTokenType::RefreshToken, None) => {
            return Err(field(
                "subject_token_header",
                "required when subject_token_type is refresh_token",
            ))
        }
        (SubjectTokenType::IdToken, Some(h)) => {
            let h = header_name(&h).map_err(|m| field("subject_token_header", m))?;
            if h == "authorization" {
                return Err(field(
                    "subject_token_header",
                    "must not be authorization (the agent's bearer token travels there)",
                ));
            }
            Some(h)
        }
        // Okta "user access" takes the user's ID token for the agent's own client, which the
        // agent holds next to its access token; without a header there is nothing to send.
        (SubjectTokenType::IdToken, None) => {
            return Err(field(
                "subject_token_header",
                "required when subject_token_type is id_token (the request header carrying the user's ID token for the agent's client)",
            ))
        }
        (_, Some(_)) => {
            return Err(field(
                "subject_token_header",
                "only used with subject_token_type refresh_token or id_token",
            ))
        }
        (_, None) => None,
    };
    let connect_required_errors = match raw.connect_required_errors {
        None => vec![
            "federated_connection_refresh_token_not_found".into(),
            "tokenset_not_found".into(),
        ],
        Some(list) if list.is_empty() => {
            return Err(field("connect_required_errors", "must not be empty"))
        }
        Some(list) => list,
    };
    let (domain, backend) = match kind {
        "auth0" => {
            let domain = raw.domain.unwrap_or_default();
            if !is_authority(&domain) {
                return Err(field(
                    "domain",
                    "must be a host name with an optional port, without scheme or path",
                ));
            }
            let client_secret = resolve_secret(raw.client_secret, raw.client_secret_env, env)
                .map_err(|(f, m)| field(f, &m))?;
            (domain, VaultBackend::Auth0 { client_secret })
        }
        _ => {
            let token =
                endpoint(&cluster, raw.token_url.as_deref()).map_err(|m| field("token_url", m))?;
            let key = signing_key(raw.private_key_env.as_deref(), raw.key_id.as_deref(), env)
                .map_err(|(f, m)| field(f, &m))?;
            let backend = if kind == "okta-sts" {
                let resource = raw.resource.unwrap_or_default();
                require_text(&resource).map_err(|m| field("resource", m))?;
                VaultBackend::OktaSts {
                    token: token.clone(),
                    key,
                    resource,
                }
            } else {
                let audience = raw.audience.unwrap_or_default();
                Url::parse(&audience).map_err(|m| field("audience", m))?;
                let scopes = raw.scopes.unwrap_or_default();
                if let Some(bad) = scopes
                    .iter()
                    .find(|s| s.is_empty() || !s.bytes().all(is_scope_char))
                {
                    return Err(field(
                        "scopes",
                        &format!("'{}' is not a valid scope token", printable(bad)),
                    ));
                }
                let resource_cluster = match &raw.resource_cluster {
                    Some(c) => cluster_name(c).map_err(|m| field("resource_cluster", m))?,
                    None => cluster.clone(),
                };
                let resource_token = endpoint(&resource_cluster, raw.resource_token_url.as_deref())
                    .map_err(|m| field("resource_token_url", m))?;
                let resource_client_id = raw.resource_client_id.unwrap_or_default();
                require_text(&resource_client_id).map_err(|m| field("resource_client_id", m))?;
                let resource = match raw.resource {
                    Some(r) => {
                        require_text(&r).map_err(|m| field("resource", m))?;
                        Some(r)
                    }
                    None => None,
                };
                let resource_auth = resource_auth(
                    raw.resource_as.as_deref(),
                    &audience,
                    &resource_token,
                    &key,
                    (raw.resource_client_secret, raw.resource_client_secret_env),
                    env,
                )
                .map_err(|(f, m)| field(f, &m))?;
                VaultBackend::IdJag {
                    token: token.clone(),
                    key,
                    audience,
                    scopes,
                    resource,
                    resource_token,
                    resource_client_id,
                    resource_auth,
                }
            };
            (token.authority, backend)
        }
    };
    Ok(VaultConfig {
        cluster,
        domain,
        client_id: raw.client_id,
        connection: raw.connection,
        subject_token_type,
        subject_token_header,
        login_hint_claim: raw.login_hint_claim,
        connect_required_errors,
        backend,
    })
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
                "environment variable '{}' is not set for the Wasm VM (vm_config.environment_variables)",
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
                    "environment variable '{}' is not set for the Wasm VM (vm_config.environment_variables)",
                    printable(&name)
                ),
            )),
        },
    }
}
