//! Auth0 login and the My Account API's Connected Accounts endpoints, as the filter's connect
//! pages use them: `/authorize` (code + PKCE), the code grant at `/oauth/token`,
//! `/me/v1/connected-accounts/{connect,complete,accounts}`, and the provider's consent page
//! that `connect_uri?ticket=` leads to. Every single-use value is single-use here too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::{Request, Response};
use crate::web::{consent_page, encode, escape, html, oauth_error, parse_form as form};
use crate::{lock, now, SimTenant, State};

const CODE_TTL_S: u64 = 300;
const MY_ACCOUNT_TOKEN_TTL_S: u64 = 600;
const TICKET_TTL_S: u64 = 300;
/// Cookie of the sim's own login session ("already signed in to Auth0").
pub(crate) const USER_COOKIE: &str = "sim_user";

#[derive(Default)]
pub struct Accounts {
    codes: HashMap<String, Code>,
    tokens: HashMap<String, MyAccountToken>,
    tickets: HashMap<String, Ticket>,
    connect_codes: HashMap<String, String>,
    /// The consent page approves by itself (for a headless browser that cannot click).
    pub auto_consent: bool,
    /// Every browser is already signed in as this user (an Auth0 single sign-on session).
    pub auto_login: Option<String>,
}

struct Code {
    tenant: String,
    redirect_uri: String,
    challenge: String,
    sub: String,
    expires: u64,
}

struct MyAccountToken {
    tenant: String,
    sub: String,
    expires: u64,
}

struct Ticket {
    tenant: String,
    sub: String,
    connection: String,
    redirect_uri: String,
    state: Option<String>,
    challenge: Option<String>,
    auth_session: String,
    expires: u64,
    /// Set once the provider consented.
    consented: bool,
}

fn random() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Connected-account id of a user's connection.
pub fn account_id(sub: &str, connection: &str) -> String {
    let digest = Sha256::digest(format!("{sub}\u{0}{connection}").as_bytes());
    format!("cac_{}", &URL_SAFE_NO_PAD.encode(digest)[..16])
}

fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut headers = vec![("location".to_string(), location.to_string())];
    if let Some(c) = cookie {
        headers.push(("set-cookie".into(), c));
    }
    Response::Full {
        status: 302,
        headers,
        body: Vec::new(),
    }
}

/// RFC 7807-style error of the My Account API.
fn problem(status: u16, title: &str, detail: &str) -> Response {
    Response::json(
        status,
        &json!({"type": "https://auth0.com/api-errors/A0E-400-0001", "status": status, "title": title, "detail": detail}),
    )
}

fn with_location_params(uri: &str, params: &[(&str, &str)]) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{uri}{sep}{}", q.join("&"))
}

fn tenant_by_connect_client<'s>(st: &'s State, client_id: &str) -> Option<&'s SimTenant> {
    st.tenants
        .iter()
        .find(|t| t.connect_client_id.as_deref() == Some(client_id))
}

/// `GET /authorize` and `POST /authorize/login`: check the authorization request, then sign
/// the user in (from the sim's own session cookie, or the login form).
pub(crate) fn authorize(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    let (params, user) = if r.method == "POST" {
        let f = form(&String::from_utf8_lossy(&r.body));
        let q = f.get("q").cloned().unwrap_or_default();
        (
            form(&q),
            f.get("username").cloned().filter(|u| !u.is_empty()),
        )
    } else {
        let cookie = r.header("cookie").and_then(|c| {
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| *k == USER_COOKIE)
                .map(|(_, v)| v.to_string())
        });
        (form(&r.query), cookie)
    };
    let user = user.or_else(|| lock(state).accounts.auto_login.clone());
    let p0 = |k: &str| params.get(k).cloned().unwrap_or_default();
    // `prompt=login`: ask for credentials even with a single sign-on session.
    let user = if r.method == "GET" && p0("prompt") == "login" {
        None
    } else {
        user
    };
    let p = |k: &str| params.get(k).cloned().unwrap_or_default();
    let mut st = lock(state);
    let Some(tenant) = tenant_by_connect_client(&st, &p("client_id")).cloned() else {
        return html(400, "<h1>Unknown client</h1>");
    };
    let audience = format!("https://{}/me/", tenant.vault_domain);
    let scopes: Vec<String> = p("scope").split(' ').map(str::to_string).collect();
    if p("response_type") != "code"
        || p("redirect_uri").is_empty()
        || p("code_challenge").len() < 43
        || p("code_challenge_method") != "S256"
        || p("audience") != audience
        || !scopes.iter().any(|s| s == "openid")
        || !scopes.iter().any(|s| s == "create:me:connected_accounts")
    {
        return html(400, "<h1>Invalid authorization request</h1>");
    }
    let Some(sub) = user else {
        // Not signed in: the login form, carrying the authorization request along.
        return html(
            200,
            &format!(
                "<h1>Sign in to {}</h1><form method=\"post\" action=\"/authorize/login\">\
                 <input type=\"hidden\" name=\"q\" value=\"{}\">\
                 <label>Username <input name=\"username\" autofocus></label>\
                 <button type=\"submit\">Sign in</button></form>",
                escape(&tenant.id),
                escape(&r_query_or_form(r))
            ),
        );
    };
    let code = random();
    st.accounts.codes.insert(
        code.clone(),
        Code {
            tenant: tenant.id.clone(),
            redirect_uri: p("redirect_uri"),
            challenge: p("code_challenge"),
            sub: sub.clone(),
            expires: now() + CODE_TTL_S,
        },
    );
    let location = with_location_params(
        &p("redirect_uri"),
        &[("code", &code), ("state", &p("state"))],
    );
    let cookie = format!("{USER_COOKIE}={sub}; Path=/; HttpOnly; SameSite=Lax");
    redirect(&location, Some(cookie))
}

/// The authorization request as it came: the query of a GET, or the carried `q` of a POST.
fn r_query_or_form(r: &Request) -> String {
    if r.method == "POST" {
        form(&String::from_utf8_lossy(&r.body))
            .get("q")
            .cloned()
            .unwrap_or_default()
    } else {
        r.query.clone()
    }
}

/// `POST /oauth/token` with `grant_type=authorization_code` (form-encoded).
pub(crate) fn code_grant(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    let f = form(&String::from_utf8_lossy(&r.body));
    let p = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut st = lock(state);
    let Some(tenant) = tenant_by_connect_client(&st, &p("client_id")).cloned() else {
        return oauth_error(401, "invalid_client", "Client authentication failed");
    };
    if tenant.connect_client_secret.as_deref() != Some(p("client_secret").as_str()) {
        return oauth_error(401, "invalid_client", "Client authentication failed");
    }
    let Some(code) = st.accounts.codes.remove(&p("code")) else {
        return oauth_error(403, "invalid_grant", "Invalid authorization code");
    };
    if code.tenant != tenant.id || code.expires <= now() || code.redirect_uri != p("redirect_uri") {
        return oauth_error(403, "invalid_grant", "Invalid authorization code");
    }
    if s256(&p("code_verifier")) != code.challenge {
        return oauth_error(403, "invalid_grant", "Failed to verify code verifier");
    }
    let token = format!("myacct_{}", random());
    st.accounts.tokens.insert(
        token.clone(),
        MyAccountToken {
            tenant: tenant.id.clone(),
            sub: code.sub.clone(),
            expires: now() + MY_ACCOUNT_TOKEN_TTL_S,
        },
    );
    let Some(keys) = st.keys.get(&tenant.id) else {
        return oauth_error(500, "server_error", "no keys");
    };
    let claims = json!({
        "iss": tenant.issuer, "sub": code.sub, "aud": p("client_id"),
        "iat": now(), "exp": now() + 36_000,
    });
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": keys.kid_for("RS256", "current")});
    let Ok(id_token) = keys.sign("RS256", "current", &header, &claims) else {
        return oauth_error(500, "server_error", "signing failed");
    };
    st.minted.push(id_token.clone());
    st.downstream.push(token.clone());
    Response::json(
        200,
        &json!({
            "access_token": token,
            "id_token": id_token,
            "token_type": "Bearer",
            "expires_in": MY_ACCOUNT_TOKEN_TTL_S,
            "scope": "openid create:me:connected_accounts read:me:connected_accounts delete:me:connected_accounts",
        }),
    )
}

/// The My Account API: `/me/v1/connected-accounts/...` with a My Account token.
pub(crate) fn my_account(state: &Arc<Mutex<State>>, r: &Request, rest: &[&str]) -> Response {
    let mut st = lock(state);
    let bearer = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    let Some(caller) = st
        .accounts
        .tokens
        .get(bearer)
        .filter(|t| t.expires > now())
        .map(|t| (t.tenant.clone(), t.sub.clone()))
    else {
        return problem(401, "Unauthorized", "Invalid token");
    };
    let (tenant_id, sub) = caller;
    let Some(tenant) = st.tenants.iter().find(|t| t.id == tenant_id).cloned() else {
        return problem(401, "Unauthorized", "Invalid token");
    };
    let body = || serde_json::from_slice::<Value>(&r.body).ok();
    let only = |v: &Value, allowed: &[&str]| {
        v.as_object()
            .is_some_and(|o| o.keys().all(|k| allowed.contains(&k.as_str())))
    };
    match (r.method.as_str(), rest) {
        ("POST", ["connect"]) => {
            let Some(b) = body() else {
                return problem(400, "Bad Request", "Body must be JSON");
            };
            let allowed = [
                "connection",
                "redirect_uri",
                "state",
                "scopes",
                "code_challenge",
                "code_challenge_method",
                "authorization_params",
            ];
            if !only(&b, &allowed) {
                return problem(400, "Bad Request", "Additional properties not allowed");
            }
            let connection = b["connection"].as_str().unwrap_or_default();
            let redirect_uri = b["redirect_uri"].as_str().unwrap_or_default();
            if connection != tenant.connection {
                return problem(
                    400,
                    "Bad Request",
                    "Connection is not enabled for this application",
                );
            }
            if redirect_uri.is_empty() {
                return problem(400, "Bad Request", "redirect_uri is required");
            }
            let challenge = b["code_challenge"].as_str().map(str::to_string);
            if challenge.is_some() != (b["code_challenge_method"] == "S256") {
                return problem(400, "Bad Request", "code_challenge_method must be S256");
            }
            let ticket = random();
            let auth_session = random();
            st.accounts.tickets.insert(
                ticket.clone(),
                Ticket {
                    tenant: tenant.id.clone(),
                    sub,
                    connection: connection.to_string(),
                    redirect_uri: redirect_uri.to_string(),
                    state: b["state"].as_str().map(str::to_string),
                    challenge,
                    auth_session: auth_session.clone(),
                    expires: now() + TICKET_TTL_S,
                    consented: false,
                },
            );
            let host = r.header("host").unwrap_or("127.0.0.1");
            Response::json(
                201,
                &json!({
                    "auth_session": auth_session,
                    "connect_uri": format!("http://{host}/connected-accounts/connect"),
                    "connect_params": {"ticket": ticket},
                    "expires_in": TICKET_TTL_S,
                }),
            )
        }
        ("POST", ["complete"]) => {
            let Some(b) = body() else {
                return problem(400, "Bad Request", "Body must be JSON");
            };
            let allowed = [
                "auth_session",
                "connect_code",
                "redirect_uri",
                "code_verifier",
            ];
            if !only(&b, &allowed) {
                return problem(400, "Bad Request", "Additional properties not allowed");
            }
            let s = |k: &str| b[k].as_str().unwrap_or_default().to_string();
            let Some(ticket_id) = st.accounts.connect_codes.remove(&s("connect_code")) else {
                return problem(400, "Bad Request", "Invalid connect_code");
            };
            let Some(ticket) = st.accounts.tickets.remove(&ticket_id) else {
                return problem(400, "Bad Request", "Invalid connect_code");
            };
            let verifier_ok = match &ticket.challenge {
                Some(c) => s256(&s("code_verifier")) == *c,
                None => true,
            };
            if ticket.auth_session != s("auth_session")
                || ticket.redirect_uri != s("redirect_uri")
                || ticket.sub != sub
                || ticket.tenant != tenant.id
                || !ticket.consented
                || ticket.expires <= now()
            {
                return problem(400, "Bad Request", "Invalid auth_session");
            }
            if !verifier_ok {
                return problem(400, "Bad Request", "Failed to verify code_verifier");
            }
            st.connected
                .entry(sub.clone())
                .or_default()
                .insert(ticket.connection.clone());
            Response::json(
                201,
                &json!({
                    "id": account_id(&sub, &ticket.connection),
                    "connection": ticket.connection,
                    "access_type": "offline",
                    "scopes": ["repo"],
                    "created_at": "2026-11-27T00:00:00.000Z",
                }),
            )
        }
        ("GET", ["accounts"]) => {
            let filter = form(&r.query).get("connection").cloned();
            let accounts: Vec<Value> = st
                .connected
                .get(&sub)
                .map(|set| {
                    let mut list: Vec<&String> = set.iter().collect();
                    list.sort();
                    list.into_iter()
                        .filter(|c| filter.as_ref().is_none_or(|f| f == *c))
                        .map(|c| {
                            json!({"id": account_id(&sub, c), "connection": c, "access_type": "offline",
                                   "scopes": ["repo"], "created_at": "2026-11-27T00:00:00.000Z"})
                        })
                        .collect()
                })
                .unwrap_or_default();
            Response::json(200, &json!({"accounts": accounts}))
        }
        ("DELETE", ["accounts", id]) => {
            let set = st.connected.entry(sub.clone()).or_default();
            let found = set.iter().find(|c| account_id(&sub, c) == *id).cloned();
            match found {
                Some(c) => {
                    set.remove(&c);
                    Response::raw(204, "application/json", Vec::new())
                }
                None => problem(404, "Not Found", "Connected account not found"),
            }
        }
        _ => problem(404, "Not Found", "No such endpoint"),
    }
}

/// The provider's consent page (`connect_uri?ticket=`) and its answer.
pub(crate) fn consent(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    let mut st = lock(state);
    if r.method == "GET" {
        let ticket_id = form(&r.query).get("ticket").cloned().unwrap_or_default();
        let Some(ticket) = st
            .accounts
            .tickets
            .get(&ticket_id)
            .filter(|t| t.expires > now())
        else {
            return html(400, "<h1>Invalid or expired ticket</h1>");
        };
        let heading = format!(
            "<h1>Connect your {c} account</h1><p>{t} asks to act for <b>{u}</b> with {c}.</p>",
            c = escape(&ticket.connection),
            t = escape(&ticket.tenant),
            u = escape(&ticket.sub),
        );
        return consent_page(
            &heading,
            "/connected-accounts/approve",
            ("ticket", &ticket_id),
            st.accounts.auto_consent,
        );
    }
    let f = form(&String::from_utf8_lossy(&r.body));
    let ticket_id = f.get("ticket").cloned().unwrap_or_default();
    let decision = f.get("decision").cloned().unwrap_or_else(|| "allow".into());
    let Some(ticket) = st
        .accounts
        .tickets
        .get_mut(&ticket_id)
        .filter(|t| t.expires > now() && !t.consented)
    else {
        return html(400, "<h1>Invalid or expired ticket</h1>");
    };
    let state_param = ticket.state.clone().unwrap_or_default();
    let redirect_uri = ticket.redirect_uri.clone();
    if decision != "allow" {
        st.accounts.tickets.remove(&ticket_id);
        let location = with_location_params(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "The user denied access"),
                ("state", &state_param),
            ],
        );
        return redirect(&location, None);
    }
    ticket.consented = true;
    let code = random()[..24].to_string();
    st.accounts.connect_codes.insert(code.clone(), ticket_id);
    let location = with_location_params(
        &redirect_uri,
        &[("connect_code", &code), ("state", &state_param)],
    );
    redirect(&location, None)
}
