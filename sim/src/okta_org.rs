//! The Okta org authorization server's browser sign-in, as the filter's connect pages use it
//! for an Okta STS tenant: OIDC authorization code + PKCE at `/okta/oauth2/v1/authorize`, the
//! code grant at `/okta/oauth2/v1/token`, the org's keys at `/okta/oauth2/v1/keys`, ID tokens
//! signed RS256 with `iss` the org's base URL and `sub` the user.
//!
//! Sources: https://developer.okta.com/docs/concepts/auth-servers/ (org authorization server:
//! `https://{yourOktaDomain}/oauth2/v1/...`, issuer `https://{yourOktaDomain}`),
//! https://developer.okta.com/docs/guides/implement-grant-type/authcodepkce/main/ .

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::http::{Request, Response};
use crate::keys::random_id;
use crate::okta::OktaGrant;
use crate::web::s256;
use crate::web::{
    basic_credentials, html, login_form, oauth_error, parse_form, redirect, sign_in_request,
    with_params,
};
use crate::{lock, now, SimTenant, State};

/// Okta's authorization codes live 60 seconds.
const CODE_TTL_S: u64 = 60;
const TOKEN_TTL_S: u64 = 3600;
/// The sim's Okta sign-in session cookie (apart from the Auth0 one: another IdP).
pub const OKTA_USER_COOKIE: &str = "sim_okta_user";

/// Codes issued and not yet redeemed.
#[derive(Default)]
pub(crate) struct OrgServer {
    codes: HashMap<String, Code>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    sub: String,
    nonce: Option<String>,
    expires: u64,
}

/// The org's issuer as the caller reaches it (`http://{host}/okta`).
fn issuer(r: &Request) -> String {
    format!("http://{}/okta", r.header("host").unwrap_or("127.0.0.1"))
}

/// The Okta STS tenant whose connect client is `client_id`.
fn client<'s>(st: &'s State, client_id: &str) -> Option<&'s SimTenant> {
    st.tenants.iter().find(|t| {
        t.connect_client_id.as_deref() == Some(client_id)
            && matches!(
                t.okta.as_ref().map(|o| &o.grant),
                Some(OktaGrant::Sts { .. })
            )
    })
}

/// `GET /okta/oauth2/v1/authorize` and `POST /okta/oauth2/v1/authorize/login`.
pub(crate) fn authorize(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    let (query, user) = sign_in_request(r, OKTA_USER_COOKIE);
    let params = parse_form(&query);
    let p = |k: &str| params.get(k).cloned().unwrap_or_default();
    let mut st = lock(state);
    // An unknown client or an unregistered redirect URI is shown to the user, never
    // redirected to (RFC 6749 section 4.1.2.1; Okta's error page names the redirect_uri).
    let Some(tenant) = client(&st, &p("client_id")).cloned() else {
        return html(400, "<h1>Unknown client</h1>");
    };
    if tenant.connect_redirect_uri.as_deref() != Some(p("redirect_uri").as_str()) {
        return html(
            400,
            "<h1>The 'redirect_uri' parameter must be a Login redirect URI in the client app settings</h1>",
        );
    }
    let back = |error: &str, description: &str| {
        let params = [
            ("error", error),
            ("error_description", description),
            ("state", &p("state")),
        ];
        redirect(&with_params(&p("redirect_uri"), &params), None)
    };
    if p("response_type") != "code" {
        return back("unsupported_response_type", "response_type must be code");
    }
    // Okta takes S256 only; the challenge is 43-128 characters (RFC 7636 section 4.2).
    let challenge = p("code_challenge");
    if p("code_challenge_method") != "S256" || !(43..=128).contains(&challenge.len()) {
        return back("invalid_request", "PKCE code_challenge_method must be S256");
    }
    if !p("scope").split(' ').any(|s| s == "openid") {
        return back("invalid_scope", "The OpenID Connect sign-in needs openid");
    }
    if p("state").is_empty() {
        return back("invalid_request", "The state parameter is required");
    }
    // `prompt=login`: credentials again, even with a sign-in session.
    let user = user.filter(|_| !(r.method == "GET" && p("prompt") == "login"));
    let Some(sub) = user.or_else(|| st.accounts.auto_login.clone()) else {
        return login_form("Okta", "/okta/oauth2/v1/authorize/login", &query);
    };
    let code = random_id();
    st.okta_org.codes.retain(|_, c| c.expires > now());
    st.okta_org.codes.insert(
        code.clone(),
        Code {
            client_id: p("client_id"),
            redirect_uri: p("redirect_uri"),
            challenge,
            sub: sub.clone(),
            nonce: params.get("nonce").cloned(),
            expires: now() + CODE_TTL_S,
        },
    );
    let location = with_params(
        &p("redirect_uri"),
        &[("code", &code), ("state", &p("state"))],
    );
    let cookie = format!("{OKTA_USER_COOKIE}={sub}; Path=/okta/; HttpOnly; SameSite=Lax");
    redirect(&location, Some(cookie))
}

/// Whether a token request is the code grant (the STS and ID-JAG exchanges share the URL).
pub(crate) fn is_code_grant(r: &Request) -> bool {
    parse_form(&String::from_utf8_lossy(&r.body))
        .get("grant_type")
        .is_some_and(|g| g == "authorization_code")
}

/// `POST /okta/oauth2/v1/token` with `grant_type=authorization_code`.
pub(crate) fn token(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    let f = parse_form(&String::from_utf8_lossy(&r.body));
    let p = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut st = lock(state);
    // An Okta web app authenticates as registered: client_secret_basic (the default), so a
    // secret in the form, or a wrong one, is refused.
    let credentials = basic_credentials(r).filter(|_| !f.contains_key("client_secret"));
    let Some((client_id, secret)) = credentials else {
        return oauth_error(401, "invalid_client", "Client authentication failed.");
    };
    let Some(tenant) = client(&st, &client_id).cloned() else {
        return oauth_error(401, "invalid_client", "Client authentication failed.");
    };
    if tenant.connect_client_secret.as_deref() != Some(secret.as_str()) {
        return oauth_error(401, "invalid_client", "Client authentication failed.");
    }
    // Single use: a code is gone once presented, whatever happens next.
    let Some(code) = st.okta_org.codes.remove(&p("code")) else {
        return oauth_error(
            400,
            "invalid_grant",
            "The authorization code is invalid or has expired.",
        );
    };
    let bound = code.client_id == client_id
        && code.redirect_uri == p("redirect_uri")
        && code.expires > now();
    if !bound {
        return oauth_error(
            400,
            "invalid_grant",
            "The authorization code is invalid or has expired.",
        );
    }
    let verifier = p("code_verifier");
    if s256(&verifier) != code.challenge {
        return oauth_error(400, "invalid_grant", "PKCE verification failed.");
    }
    let Some(keys) = st.okta.keys.as_ref() else {
        return oauth_error(500, "server_error", "no keys");
    };
    let mut claims = json!({
        "iss": issuer(r), "sub": code.sub, "aud": client_id, "ver": 1,
        "iat": now(), "exp": now() + TOKEN_TTL_S, "jti": format!("ID.{}", random_id()),
        "amr": ["pwd"], "auth_time": now(),
    });
    if let Some(nonce) = code.nonce {
        claims["nonce"] = json!(nonce);
    }
    // The org authorization server signs ID tokens RS256.
    let header = json!({"alg": "RS256", "kid": keys.kid_for("RS256", "current")});
    let Ok(id_token) = keys.sign("RS256", "current", &header, &claims) else {
        return oauth_error(500, "server_error", "signing failed");
    };
    let access_token = format!("okta_at_{}", random_id());
    st.minted.push(id_token.clone());
    st.downstream.push(access_token.clone());
    Response::json(
        200,
        &json!({
            "token_type": "Bearer", "expires_in": TOKEN_TTL_S, "scope": "openid",
            "access_token": access_token, "id_token": id_token,
        }),
    )
}

/// `GET /okta/oauth2/v1/keys`: the org's signing keys.
pub(crate) fn keys(state: &Arc<Mutex<State>>) -> Response {
    match lock(state).okta.keys.as_ref() {
        Some(k) => Response::json(200, &k.jwks()),
        None => Response::json(404, &json!({"errorCode": "E0000007"})),
    }
}
