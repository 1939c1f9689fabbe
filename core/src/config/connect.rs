//! The `connect` section of a tenant: the web client the filter signs users in with before
//! sending them to connect their account, at the tenant's Auth0 or at the Okta org.

use serde_json::value::RawValue;

use super::{
    is_scope_char, printable, require_text, resolve_secret, schema, ConnectConfig, ConnectProvider,
    EnvVar, Found, RawConnect, Url, VaultBackend, VaultConfig,
};
use crate::jose::Alg;

/// Okta's org authorization server token endpoint, under the org's base URL
/// (https://developer.okta.com/docs/concepts/auth-servers/).
const OKTA_ORG_TOKEN_PATH: &str = "/oauth2/v1/token";
const OKTA_ORG_KEYS_PATH: &str = "/oauth2/v1/keys";

/// Agent-token claims that are not a user's string identifier.
const NOT_A_USER_CLAIM: &[&str] = &[
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "scope",
    "scp",
    "permissions",
    "azp",
    "client_id",
    "cid",
];

/// The connect section; what depends on the vault is checked once the vault is valid.
pub(super) fn validate_connect(
    raw: &RawValue,
    vault: Option<&VaultConfig>,
    env: &dyn Fn(&str) -> Option<String>,
    found: &mut Found,
) -> Option<(ConnectConfig, Vec<EnvVar>)> {
    let (raw, shape) = schema::object::<RawConnect>(raw, found, "connect")?;
    if !shape.clean() {
        return None;
    }
    let before = found.len();
    let client_id = shape
        .required(found, "client_id", raw.client_id)
        .filter(|c| found.check("connect.client_id", require_text(c)).is_some());
    let env_vars: Vec<EnvVar> = raw
        .client_secret_env
        .iter()
        .map(|name| EnvVar {
            field: "connect.client_secret_env",
            name: name.clone(),
        })
        .collect();
    let client_secret = resolve_secret(raw.client_secret, raw.client_secret_env, env)
        .map_err(|(f, m)| found.add(&format!("connect.{f}"), m))
        .ok();
    let user_claim = user_claim(raw.user_claim)
        .map_err(|m| found.add("connect.user_claim", m))
        .ok();
    found.check("connect.scopes", check_scopes(&raw.scopes));
    let vault = vault?;
    let (login_url, provider, id_token_algorithms) = match &vault.backend {
        VaultBackend::Auth0 { .. } => {
            // Auth0 puts the same `sub` in its access and ID tokens: another claim could only
            // name someone else, and the accounts page keys the user by `sub`.
            if user_claim.as_deref().is_some_and(|c| c != "sub") {
                found.add(
                    "connect.user_claim",
                    "must be \"sub\" for vault type \"auth0\" (Auth0's ID token and access token carry the same sub)",
                );
            }
            let login_url = auth0_login_url(raw.login_url, &vault.domain)
                .map_err(|m| found.add("connect.login_url", m))
                .ok();
            let algorithms =
                id_token_algorithms(raw.id_token_algorithms, &[Alg::Rs256, Alg::Ps256])
                    .map_err(|m| found.add("connect.id_token_algorithms", m))
                    .ok();
            let provider = ConnectProvider::Auth0 {
                my_account_audience: format!("https://{}/me/", vault.domain),
            };
            (login_url, provider, algorithms)
        }
        VaultBackend::OktaSts { token, .. } => {
            // Okta keeps the STS connection's scopes itself; the sign-in asks `openid` only.
            if !raw.scopes.is_empty() {
                found.add(
                    "connect.scopes",
                    "not used for vault type \"okta-sts\" (the resource connection's scopes are set at Okta)",
                );
            }
            let org = okta_org(&token.url, &token.path);
            match (&org, raw.login_url) {
                (None, _) => found.add(
                    "connect.login_url",
                    "the Okta sign-in needs vault.token_url to be the org authorization server's ({org}/oauth2/v1/token)",
                ),
                (Some(org), Some(given))
                    if !given.trim_end_matches('/').eq_ignore_ascii_case(&org.base) =>
                {
                    found.add(
                        "connect.login_url",
                        format!(
                            "must be the Okta org of vault.token_url ('{}')",
                            printable(&org.base)
                        ),
                    )
                }
                _ => {}
            }
            // The org authorization server signs ID tokens RS256.
            let algorithms = id_token_algorithms(raw.id_token_algorithms, &[Alg::Rs256])
                .map_err(|m| found.add("connect.id_token_algorithms", m))
                .ok();
            let org = org?;
            let provider = ConnectProvider::Okta {
                issuer: org.base.clone(),
                token_path: token.path.clone(),
                keys_path: org.keys_path,
            };
            (Some(org.base), provider, algorithms)
        }
        VaultBackend::IdJag { .. } => {
            found.add(
                "connect",
                "only for vault types \"auth0\" and \"okta-sts\" (Cross App Access has no user interaction)",
            );
            return None;
        }
    };
    if found.len() > before {
        return None;
    }
    let config = ConnectConfig {
        client_id: client_id?,
        client_secret: client_secret?,
        login_url: login_url?,
        provider,
        scopes: raw.scopes,
        id_token_algorithms: id_token_algorithms?,
        user_claim: user_claim?,
    };
    Some((config, env_vars))
}

fn auth0_login_url(raw: Option<String>, domain: &str) -> Result<String, String> {
    let Some(u) = raw else {
        return Ok(format!("https://{domain}"));
    };
    let url = Url::parse(&u)?;
    if url.path_and_query != "/" {
        return Err("must be an origin (scheme and host, no path)".into());
    }
    // Auth0's My Account API: the token, its audience and the calls all use one domain,
    // canonical or custom (https://auth0.com/docs/manage-users/my-account-api).
    if !same_domain(&url, domain) {
        return Err(format!(
            "host '{}' is not vault.domain '{}': use the same Auth0 domain throughout",
            printable(&url.authority),
            printable(domain)
        ));
    }
    Ok(format!("{}://{}", url.scheme, url.authority))
}

/// The Okta org a token endpoint belongs to.
struct OktaOrg {
    /// `https://{okta-domain}`: the org authorization server's issuer.
    base: String,
    keys_path: String,
}

/// The org of an org authorization server token URL (`{org}/oauth2/v1/token`); `None` for a
/// custom authorization server's (`/oauth2/{id}/v1/token`), which cannot sign users in here.
fn okta_org(token_url: &str, token_path: &str) -> Option<OktaOrg> {
    let base = token_url.strip_suffix(OKTA_ORG_TOKEN_PATH)?;
    let prefix = token_path.strip_suffix(OKTA_ORG_TOKEN_PATH)?;
    Some(OktaOrg {
        base: base.to_string(),
        keys_path: format!("{prefix}{OKTA_ORG_KEYS_PATH}"),
    })
}

/// The agent-token claim naming the user (default `sub`).
fn user_claim(raw: Option<String>) -> Result<String, String> {
    let name = raw.unwrap_or_else(|| "sub".into());
    let valid = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return Err("must be a claim name".into());
    }
    if NOT_A_USER_CLAIM.contains(&name.as_str()) {
        return Err(format!(
            "'{}' does not name a user (use sub, or e.g. uid for Okta access tokens)",
            printable(&name)
        ));
    }
    Ok(name)
}

fn check_scopes(scopes: &[String]) -> Result<(), String> {
    for s in scopes {
        if s.is_empty() || !s.bytes().all(is_scope_char) {
            return Err(format!("'{}' is not a valid scope token", printable(s)));
        }
    }
    // The My Account API takes 1-100 unique scopes (`/connect`, OpenAPI `uniqueItems`).
    if scopes.len() > 100 {
        return Err("at most 100 scopes".into());
    }
    if let Some(s) = scopes
        .iter()
        .enumerate()
        .find_map(|(i, s)| scopes[..i].contains(s).then_some(s))
    {
        return Err(format!("'{}' is listed twice", printable(s)));
    }
    Ok(())
}

/// Whether an origin is on the Auth0 domain `domain` (`host[:port]`), default ports aside.
fn same_domain(url: &Url, domain: &str) -> bool {
    let default_port = if url.scheme == "https" { ":443" } else { ":80" };
    let origin = url.authority.to_ascii_lowercase();
    let origin = origin.strip_suffix(default_port).unwrap_or(&origin);
    let domain = domain.to_ascii_lowercase();
    let domain = domain.strip_suffix(":443").unwrap_or(&domain);
    origin == domain
}

/// The configured ID-token algorithms, each one of `supported` (the default: all of them).
fn id_token_algorithms(raw: Option<Vec<String>>, supported: &[Alg]) -> Result<Vec<Alg>, String> {
    let Some(names) = raw else {
        return Ok(supported.to_vec());
    };
    if names.is_empty() {
        return Err("must list at least one algorithm".into());
    }
    let mut out = Vec::new();
    for name in &names {
        let Some(alg) = supported.iter().find(|a| a.name() == name.as_str()) else {
            let names: Vec<&str> = supported.iter().map(|a| a.name()).collect();
            return Err(format!(
                "'{}' is not supported (the sign-in's ID tokens are signed with {})",
                printable(name),
                names.join(" or ")
            ));
        };
        if !out.contains(alg) {
            out.push(*alg);
        }
    }
    Ok(out)
}
