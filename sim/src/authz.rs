//! Each tenant issuer as the authorization server an MCP client meets when it knows nothing but
//! the gateway URL, behaving as Auth0 does:
//!
//! - RFC 8414 metadata at the path-inserted well-known URL (and in the OpenID discovery
//!   document), naming the issuer exactly;
//! - RFC 7591 dynamic client registration at `/oidc/register` (Auth0's endpoint), and clients
//!   identified by a Client ID Metadata Document URL once an administrator imported it (Auth0's
//!   "manual CIMD registration"), advertised when the tenant setting is on;
//! - `/authorize` with PKCE (S256 only), the user's sign-in, and `iss` in the response ("Include
//!   Issuer in Authorization Responses", RFC 9207);
//! - the code grant at `/oauth/token`, where the token's audience comes from `audience`, or from
//!   RFC 8707 `resource` only under the Resource Parameter Compatibility Profile, and must be an
//!   API the tenant defines. Without an API the token is opaque (Auth0's `/userinfo` token), so
//!   the gateway refuses it: the same 401 loop a real tenant without the profile produces.
//!
//! Sources: https://auth0.com/ai/docs/mcp/guides/resource-param-compatibility-profile ,
//! https://auth0.com/ai/docs/mcp/guides/registering-your-mcp-client-application/manual-cimd-registration ,
//! https://datatracker.ietf.org/doc/draft-ietf-oauth-client-id-metadata-document/ ,
//! https://auth0.com/docs/get-started/applications/dynamic-client-registration ,
//! https://auth0.com/docs/get-started/authentication-and-authorization-flow/authorization-code-flow-with-pkce ,
//! RFC 8414, RFC 7591, RFC 7636, RFC 8707, RFC 9207.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::http::{Request, Response};
use crate::keys::random_id;
use crate::myaccount::USER_COOKIE;
use crate::web::s256;
use crate::web::{
    basic_credentials, html, login_form, oauth_error, parse_form as form, redirect,
    sign_in_request, with_params,
};
use crate::{lock, now, SimTenant, State};

const CODE_TTL_S: u64 = 60;
const ACCESS_TOKEN_TTL_S: u64 = 3600;
/// Scopes of the OpenID layer every tenant accepts next to its API's.
const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "email"];
const AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "none"];

/// How the tenant reads RFC 8707 `resource` (Auth0 tenant setting `resource_parameter_profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResourceProfile {
    /// Auth0's default: only `audience` names the API; `resource` is ignored.
    Audience,
    /// `audience` first, else `resource`. What MCP clients need.
    #[default]
    Compatibility,
}

#[derive(Default)]
pub struct AuthServer {
    clients: HashMap<String, Client>,
    codes: HashMap<String, Code>,
    pub profile: ResourceProfile,
    /// Auth0's `client_id_metadata_document_supported` tenant setting (off by default).
    pub cimd_supported: bool,
    /// Registration requests the sim received, for tests.
    pub registrations: u64,
}

struct Client {
    tenant: String,
    redirect_uris: Vec<String>,
    auth_method: String,
    secret: Option<String>,
}

struct Code {
    tenant: String,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    sub: String,
    scope: String,
    audience: Option<String>,
    expires: u64,
}

fn tenant<'s>(st: &'s State, id: &str) -> Option<&'s SimTenant> {
    st.tenants.iter().find(|t| t.id == id)
}

fn not_found() -> Response {
    Response::json(404, &json!({"error": "not_found"}))
}

/// Authorization server metadata (RFC 8414 section 2) of a tenant issuer.
pub(crate) fn metadata(state: &Arc<Mutex<State>>, tenant_id: &str) -> Response {
    let st = lock(state);
    let Some(t) = tenant(&st, tenant_id) else {
        return not_found();
    };
    let mut document = metadata_of(t);
    if st.authz.cimd_supported {
        document["client_id_metadata_document_supported"] = json!(true);
    }
    Response::json(200, &document)
}

/// The metadata document; the OpenID discovery document carries it too.
pub(crate) fn metadata_of(t: &SimTenant) -> Value {
    let at = |path: &str| format!("{}{path}", t.issuer);
    let scopes: Vec<&str> = OIDC_SCOPES
        .iter()
        .copied()
        .chain(t.read_scopes.iter().map(String::as_str))
        .chain(t.write_scopes.iter().map(String::as_str))
        .collect();
    json!({
        "issuer": t.issuer,
        "authorization_endpoint": at("authorize"),
        "token_endpoint": at("oauth/token"),
        "registration_endpoint": at("oidc/register"),
        "jwks_uri": at("jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "scopes_supported": scopes,
        "authorization_response_iss_parameter_supported": true,
    })
}

const REDIRECT_URI_RULE: &str =
    "redirect_uris must be absolute https (or loopback http) URLs without a fragment";

/// The client metadata's redirect URIs, if usable: required for the code flow (RFC 7591
/// section 2), absolute, without a fragment (RFC 6749 section 3.1.2), and https unless on
/// loopback (RFC 8252 section 7.3).
fn redirect_uris_of(metadata: &Value) -> Option<Vec<String>> {
    let loopback = |u: &str| {
        ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| {
                u.strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            })
    };
    let listed = metadata["redirect_uris"].as_array()?;
    let uris: Vec<String> = listed
        .iter()
        .filter_map(|u| u.as_str())
        .filter(|u| !u.contains('#') && (u.starts_with("https://") || loopback(u)))
        .map(str::to_string)
        .collect();
    (!uris.is_empty() && uris.len() == listed.len()).then_some(uris)
}

/// `POST {issuer}oidc/register`: RFC 7591 dynamic client registration.
pub(crate) fn register(state: &Arc<Mutex<State>>, tenant_id: &str, r: &Request) -> Response {
    let invalid = |what: &str| oauth_error(400, "invalid_client_metadata", what);
    let mut st = lock(state);
    st.authz.registrations += 1;
    if tenant(&st, tenant_id).is_none() {
        return not_found();
    }
    // RFC 7591 section 3: the metadata is a JSON object.
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return invalid("Content-Type must be application/json");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return invalid("the body is not a JSON object");
    };
    let Some(redirect_uris) = redirect_uris_of(&body) else {
        return oauth_error(400, "invalid_redirect_uri", REDIRECT_URI_RULE);
    };
    let auth_method = body["token_endpoint_auth_method"]
        .as_str()
        .unwrap_or("client_secret_basic")
        .to_string();
    if !AUTH_METHODS.contains(&auth_method.as_str()) {
        return invalid("token_endpoint_auth_method is not supported");
    }
    let grants_ok = body["grant_types"].as_array().is_none_or(|g| {
        g.iter()
            .all(|v| matches!(v.as_str(), Some("authorization_code" | "refresh_token")))
    });
    if !grants_ok {
        return invalid("grant_types may only be authorization_code and refresh_token");
    }
    let client_id = random_id();
    let secret = (auth_method != "none").then(random_id);
    let mut answer = json!({
        "client_id": client_id,
        "client_name": body["client_name"],
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": auth_method,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    });
    if let Some(s) = &secret {
        answer["client_secret"] = json!(s);
        answer["client_secret_expires_at"] = json!(0);
    }
    st.authz.clients.insert(
        client_id,
        Client {
            tenant: tenant_id.to_string(),
            redirect_uris,
            auth_method,
            secret,
        },
    );
    Response::json(201, &answer)
}

/// An administrator imports a Client ID Metadata Document (Auth0's manual CIMD registration,
/// which fetches the document from its URL): the URL becomes a client id of the tenant. The
/// document must name itself (`client_id` equal to its URL, an https URL with a path), list
/// redirect URIs, and use no shared secret (draft-ietf-oauth-client-id-metadata-document,
/// sections 3 and 4.1).
pub(crate) fn import_cimd(
    st: &mut State,
    tenant_id: &str,
    url: &str,
    document: &Value,
) -> Result<(), String> {
    if tenant(st, tenant_id).is_none() {
        return Err(format!("unknown tenant {tenant_id}"));
    }
    let has_path = url
        .strip_prefix("https://")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(host, path)| !host.is_empty() && !path.is_empty());
    if !has_path || url.contains('#') {
        return Err("the client id must be an https URL with a path".into());
    }
    if document["client_id"].as_str() != Some(url) {
        return Err("the document's client_id must be its own URL".into());
    }
    let auth_method = document["token_endpoint_auth_method"]
        .as_str()
        .unwrap_or("none");
    if auth_method != "none" {
        return Err("a metadata document client uses no shared secret (auth method none)".into());
    }
    if document.get("client_secret").is_some() {
        return Err("a metadata document must not carry a client_secret".into());
    }
    let redirect_uris = redirect_uris_of(document).ok_or(REDIRECT_URI_RULE)?;
    st.authz.clients.insert(
        url.to_string(),
        Client {
            tenant: tenant_id.to_string(),
            redirect_uris,
            auth_method: auth_method.to_string(),
            secret: None,
        },
    );
    Ok(())
}

/// `GET {issuer}authorize` and `POST {issuer}authorize/login`.
pub(crate) fn authorize(state: &Arc<Mutex<State>>, tenant_id: &str, r: &Request) -> Response {
    let (query, user) = sign_in_request(r, USER_COOKIE);
    let params = form(&query);
    let p = |k: &str| params.get(k).cloned().unwrap_or_default();
    let mut st = lock(state);
    let Some(t) = tenant(&st, tenant_id).cloned() else {
        return not_found();
    };
    let user = user.or_else(|| st.accounts.auto_login.clone());
    // An unknown client or an unregistered redirect URI is shown to the user, never redirected
    // to (RFC 6749 section 4.1.2.1).
    let Some(client) = st
        .authz
        .clients
        .get(&p("client_id"))
        .filter(|c| c.tenant == t.id)
    else {
        return html(400, "<h1>Unknown client</h1>");
    };
    if !client.redirect_uris.contains(&p("redirect_uri")) {
        return html(
            400,
            "<h1>The redirect URI is not registered for this client</h1>",
        );
    }
    let back = |error: &str, description: &str| {
        redirect(
            &with_params(
                &p("redirect_uri"),
                &[
                    ("error", error),
                    ("error_description", description),
                    ("state", &p("state")),
                    ("iss", &t.issuer),
                ],
            ),
            None,
        )
    };
    if p("response_type") != "code" {
        return back("unsupported_response_type", "response_type must be code");
    }
    // PKCE: S256 only, challenge of 43-128 characters (RFC 7636 section 4.2).
    let challenge = p("code_challenge");
    if p("code_challenge_method") != "S256" || !(43..=128).contains(&challenge.len()) {
        return back(
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        );
    }
    // The API the token is for: `audience` first; `resource` only under the compatibility
    // profile; it must be an API the tenant defines ("Service not found" otherwise).
    let requested = params.get("audience").cloned().or_else(|| {
        (st.authz.profile == ResourceProfile::Compatibility)
            .then(|| params.get("resource").cloned())
            .flatten()
    });
    if let Some(api) = &requested {
        if *api != t.audience {
            return back("access_denied", &format!("Service not found: {api}"));
        }
    }
    let Some(sub) = user else {
        return login_form(&t.id, &format!("{}authorize/login", t.issuer), &query);
    };
    // Scopes the API and the OpenID layer define are granted; others are dropped.
    let known = |s: &&str| {
        OIDC_SCOPES.contains(s)
            || (requested.is_some()
                && (t.read_scopes.iter().chain(&t.write_scopes)).any(|k| k == s))
    };
    let asked = p("scope");
    let scope: Vec<&str> = asked.split(' ').filter(known).collect();
    let code = random_id();
    st.authz.codes.insert(
        code.clone(),
        Code {
            tenant: t.id.clone(),
            client_id: p("client_id"),
            redirect_uri: p("redirect_uri"),
            challenge,
            sub: sub.clone(),
            scope: scope.join(" "),
            audience: requested,
            expires: now() + CODE_TTL_S,
        },
    );
    let location = with_params(
        &p("redirect_uri"),
        &[("code", &code), ("state", &p("state")), ("iss", &t.issuer)],
    );
    let cookie = format!("{USER_COOKIE}={sub}; Path=/; HttpOnly; SameSite=Lax");
    redirect(&location, Some(cookie))
}

/// Client authentication at the token endpoint: the registered method, nothing else.
fn authenticated(
    client: &Client,
    client_id: &str,
    r: &Request,
    f: &HashMap<String, String>,
) -> bool {
    let basic = basic_credentials(r);
    match client.auth_method.as_str() {
        "none" => basic.is_none() && !f.contains_key("client_secret"),
        "client_secret_post" => basic.is_none() && f.get("client_secret") == client.secret.as_ref(),
        _ => basic.is_some_and(|(id, secret)| id == client_id && Some(secret) == client.secret),
    }
}

/// `POST {issuer}oauth/token` with `grant_type=authorization_code` (form-encoded).
pub(crate) fn token(state: &Arc<Mutex<State>>, tenant_id: &str, r: &Request) -> Response {
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return oauth_error(400, "invalid_request", "form-encoded body required");
    }
    let f = form(&String::from_utf8_lossy(&r.body));
    let p = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut st = lock(state);
    let Some(t) = tenant(&st, tenant_id).cloned() else {
        return not_found();
    };
    if p("grant_type") != "authorization_code" {
        return oauth_error(400, "unsupported_grant_type", "grant type not supported");
    }
    let client_ok = st
        .authz
        .clients
        .get(&p("client_id"))
        .is_some_and(|c| c.tenant == t.id && authenticated(c, &p("client_id"), r, &f));
    if !client_ok {
        return oauth_error(401, "invalid_client", "Client authentication failed");
    }
    // Single use: the code is gone whatever happens next.
    let Some(code) = st.authz.codes.remove(&p("code")) else {
        return oauth_error(403, "invalid_grant", "Invalid authorization code");
    };
    if code.tenant != t.id
        || code.client_id != p("client_id")
        || code.expires <= now()
        || code.redirect_uri != p("redirect_uri")
    {
        return oauth_error(403, "invalid_grant", "Invalid authorization code");
    }
    if s256(&p("code_verifier")) != code.challenge
        || !(43..=128).contains(&p("code_verifier").len())
    {
        return oauth_error(403, "invalid_grant", "Failed to verify code verifier");
    }
    // A `resource` at the token endpoint may not name another API than the authorization did.
    if let Some(resource) = f.get("resource") {
        if st.authz.profile == ResourceProfile::Compatibility
            && code.audience.as_ref() != Some(resource)
        {
            return oauth_error(
                400,
                "invalid_target",
                "resource does not match the authorization",
            );
        }
    }
    let access_token = match &code.audience {
        None => format!("opaque_{}", random_id()),
        Some(api) => {
            let mut aud = vec![json!(api)];
            if code.scope.split(' ').any(|s| s == "openid") {
                aud.push(json!(format!("{}userinfo", t.issuer)));
            }
            let claims = json!({
                "iss": t.issuer, "sub": code.sub, "aud": aud, "azp": code.client_id,
                "iat": now(), "exp": now() + ACCESS_TOKEN_TTL_S, "scope": code.scope,
            });
            let Some(keys) = st.keys.get(&t.id) else {
                return oauth_error(500, "server_error", "no keys");
            };
            let header = json!({"alg": t.default_alg, "typ": "JWT",
                                "kid": keys.kid_for(&t.default_alg, "current")});
            match keys.sign(&t.default_alg, "current", &header, &claims) {
                Ok(jwt) => jwt,
                Err(_) => return oauth_error(500, "server_error", "signing failed"),
            }
        }
    };
    st.minted.push(access_token.clone());
    Response::json(
        200,
        &json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL_S,
            "scope": code.scope,
        }),
    )
}
