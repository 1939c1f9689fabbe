//! Auth0 login and the My Account API's Connected Accounts endpoints, as the filter's connect
//! pages use them: `/authorize` (code + PKCE), the code grant at `/oauth/token`,
//! `/me/v1/connected-accounts/{connect,complete,accounts}`, and the provider's consent page
//! that `connect_uri?ticket=` leads to. Every single-use value is single-use here too.
//!
//! As strict as the My Account API's OpenAPI
//! (<https://github.com/auth0/docs-v2/blob/main/main/docs/oas/myaccount/myaccount-api-oas.json>,
//! "OAS" below) and its page (<https://auth0.com/docs/manage-users/my-account-api>): scopes per
//! operation, schema limits, pagination, and one domain throughout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::{Request, Response};
use crate::keys::random_id;
use crate::web::s256;
use crate::web::{
    consent_page, escape, html, login_form, oauth_error, parse_form as form, redirect,
    sign_in_request, with_params,
};
use crate::{lock, now, SimTenant, State};

const CODE_TTL_S: u64 = 300;
const MY_ACCOUNT_TOKEN_TTL_S: u64 = 600;
const TICKET_TTL_S: u64 = 300;
/// The connected-accounts scopes (OAS `security` of each operation).
pub const CREATE_SCOPE: &str = "create:me:connected_accounts";
pub const READ_SCOPE: &str = "read:me:connected_accounts";
pub const DELETE_SCOPE: &str = "delete:me:connected_accounts";
/// `take` of `GET /accounts` (OAS: default 10, maximum 20).
const DEFAULT_TAKE: usize = 10;
const MAX_TAKE: usize = 20;
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
    /// sub -> further connected accounts `(id, connection)`, beyond one per connection.
    pub extra: HashMap<String, Vec<(String, String)>>,
}

struct Code {
    tenant: String,
    redirect_uri: String,
    challenge: String,
    sub: String,
    audience: String,
    scopes: Vec<String>,
    expires: u64,
}

struct MyAccountToken {
    tenant: String,
    sub: String,
    /// `https://{domain}/me/` as asked for at `/authorize`.
    aud: String,
    scopes: Vec<String>,
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

/// Connected-account id of a user's connection.
pub fn account_id(sub: &str, connection: &str) -> String {
    let digest = Sha256::digest(format!("{sub}\u{0}{connection}").as_bytes());
    format!("cac_{}", &URL_SAFE_NO_PAD.encode(digest)[..16])
}

/// RFC 7807-style error of the My Account API (OAS `ErrorResponse`).
fn problem(status: u16, title: &str, detail: &str) -> Response {
    Response::json(status, &problem_body(status, title, detail))
}

fn problem_body(status: u16, title: &str, detail: &str) -> Value {
    json!({"type": format!("https://auth0.com/api-errors/A0E-{status}-0001"), "status": status,
           "title": title, "detail": detail})
}

/// A 400 listing every schema violation (OAS `ErrorResponse.validation_errors`).
fn invalid(errors: Vec<Value>) -> Response {
    let mut body = problem_body(400, "Bad Request", "Payload validation error");
    body["validation_errors"] = Value::Array(errors);
    Response::json(400, &body)
}

/// One schema violation, at a JSON pointer of the body (or a query parameter).
fn violation(field: &str, detail: &str) -> Value {
    json!({"detail": detail, "field": field, "pointer": format!("/{field}"), "source": "body"})
}

/// Schema checks of a request body: additional properties, required fields, string lengths.
struct Schema<'a> {
    body: &'a Value,
    errors: Vec<Value>,
}

impl<'a> Schema<'a> {
    /// Refuses a body that is not an object or has members outside `allowed`
    /// (OAS `additionalProperties: false`).
    fn new(body: &'a Value, allowed: &[&str]) -> Schema<'a> {
        let mut errors = Vec::new();
        match body.as_object() {
            None => errors.push(violation("", "must be a JSON object")),
            Some(o) => {
                for k in o.keys().filter(|k| !allowed.contains(&k.as_str())) {
                    errors.push(violation(k, "additional properties are not allowed"));
                }
            }
        }
        Schema { body, errors }
    }

    /// A string member of `min..=max` characters; `None` when absent (and not required).
    fn text(&mut self, field: &str, required: bool, min: usize, max: usize) -> Option<String> {
        match &self.body[field] {
            Value::Null if !required => None,
            Value::String(v) if (min..=max).contains(&v.chars().count()) => Some(v.clone()),
            _ => {
                let detail = format!("must be a string of {min} to {max} characters");
                self.errors.push(violation(field, &detail));
                None
            }
        }
    }

    fn done(self) -> Result<(), Response> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(invalid(self.errors))
        }
    }
}

fn tenant_by_connect_client<'s>(st: &'s State, client_id: &str) -> Option<&'s SimTenant> {
    st.tenants
        .iter()
        // An Okta tenant's connect client signs in at the Okta org, not here.
        .find(|t| t.okta.is_none() && t.connect_client_id.as_deref() == Some(client_id))
}

/// `GET /authorize` and `POST /authorize/login`: check the authorization request, then sign
/// the user in (from the sim's own session cookie, or the login form).
pub(crate) fn authorize(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    let (query, user) = sign_in_request(r, USER_COOKIE);
    let params = form(&query);
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
    {
        return html(400, "<h1>Invalid authorization request</h1>");
    }
    let Some(sub) = user else {
        // Not signed in: the login form, carrying the authorization request along.
        return login_form(&tenant.id, "/authorize/login", &query);
    };
    let code = random_id();
    st.accounts.codes.insert(
        code.clone(),
        Code {
            tenant: tenant.id.clone(),
            redirect_uri: p("redirect_uri"),
            challenge: p("code_challenge"),
            sub: sub.clone(),
            audience,
            // Granted: what was asked of the connected-accounts scopes (a client grant
            // allowing all three).
            scopes: scopes
                .into_iter()
                .filter(|s| [CREATE_SCOPE, READ_SCOPE, DELETE_SCOPE].contains(&s.as_str()))
                .collect(),
            expires: now() + CODE_TTL_S,
        },
    );
    let location = with_params(
        &p("redirect_uri"),
        &[("code", &code), ("state", &p("state"))],
    );
    let cookie = format!("{USER_COOKIE}={sub}; Path=/; HttpOnly; SameSite=Lax");
    redirect(&location, Some(cookie))
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
    let token = format!("myacct_{}", random_id());
    st.accounts.tokens.insert(
        token.clone(),
        MyAccountToken {
            tenant: tenant.id.clone(),
            sub: code.sub.clone(),
            aud: code.audience.clone(),
            scopes: code.scopes.clone(),
            expires: now() + MY_ACCOUNT_TOKEN_TTL_S,
        },
    );
    let scope = std::iter::once("openid".to_string())
        .chain(code.scopes.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let Some(keys) = st.keys.get(&tenant.id) else {
        return oauth_error(500, "server_error", "no keys");
    };
    let claims = json!({
        "iss": tenant.issuer, "sub": code.sub, "aud": p("client_id"),
        "iat": now(), "exp": now() + 36_000,
    });
    // Auth0 signs ID tokens RS256 by default, whatever the agents' tokens use.
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
            "scope": scope,
        }),
    )
}

/// The scope each operation needs (OAS `security`: `Bearer-DPoP` with one scope each;
/// `create:` covers both `/connect` and `/complete`).
fn scope_for(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("POST", ["connect"] | ["complete"]) => Some(CREATE_SCOPE),
        ("GET", ["accounts"] | ["connections"]) => Some(READ_SCOPE),
        ("DELETE", ["accounts", _]) => Some(DELETE_SCOPE),
        _ => None,
    }
}

/// The My Account API: `/me/v1/connected-accounts/...` with a My Account token.
pub(crate) fn my_account(state: &Arc<Mutex<State>>, r: &Request, rest: &[&str]) -> Response {
    let mut st = lock(state);
    let bearer = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    let Some(token) = st.accounts.tokens.get(bearer).filter(|t| t.expires > now()) else {
        return problem(401, "Unauthorized", "Invalid token");
    };
    // One domain throughout: a token for `https://{other domain}/me/` is not for this host
    // (OAS `servers` "Custom or canonical host name"; the My Account API page's "use the same
    // domain throughout").
    let host = r.header("host").unwrap_or_default();
    if token.aud != format!("https://{host}/me/") {
        return problem(401, "Unauthorized", "Invalid token audience");
    }
    let (tenant_id, sub, scopes) = (
        token.tenant.clone(),
        token.sub.clone(),
        token.scopes.clone(),
    );
    let Some(tenant) = st.tenants.iter().find(|t| t.id == tenant_id).cloned() else {
        return problem(401, "Unauthorized", "Invalid token");
    };
    let Some(needed) = scope_for(&r.method, rest) else {
        return problem(404, "Not Found", "No such endpoint");
    };
    if !scopes.iter().any(|s| s == needed) {
        return problem(
            403,
            "Forbidden",
            &format!("Insufficient scope, expected: {needed}"),
        );
    }
    let body = || serde_json::from_slice::<Value>(&r.body).ok();
    match (r.method.as_str(), rest) {
        ("POST", ["connect"]) => {
            let Some(b) = body() else {
                return problem(400, "Bad Request", "Body must be JSON");
            };
            // OAS create-connected-account request body: `additionalProperties: false`,
            // connection 1-128, redirect_uri <= 2048, state 1-4096, scopes 1-100 unique,
            // code_challenge 43-128, code_challenge_method const S256 only with a challenge.
            let mut schema = Schema::new(
                &b,
                &[
                    "connection",
                    "redirect_uri",
                    "state",
                    "scopes",
                    "code_challenge",
                    "code_challenge_method",
                    "authorization_params",
                ],
            );
            let connection = schema.text("connection", true, 1, 128);
            let redirect_uri = schema.text("redirect_uri", true, 1, 2048);
            let state_param = schema.text("state", false, 1, 4096);
            let challenge = schema.text("code_challenge", false, 43, 128);
            let method = schema.text("code_challenge_method", false, 1, 16);
            match (&b["code_challenge"], method.as_deref()) {
                (_, Some(m)) if m != "S256" => schema
                    .errors
                    .push(violation("code_challenge_method", "must be S256")),
                (Value::Null, Some(_)) => schema.errors.push(violation(
                    "code_challenge_method",
                    "only allowed with code_challenge",
                )),
                // The filter always sends both; a bare challenge would be PKCE "plain".
                (Value::String(_), None) => schema
                    .errors
                    .push(violation("code_challenge_method", "is required")),
                _ => {}
            }
            match &b["scopes"] {
                Value::Null => {}
                Value::Array(list)
                    if (1..=100).contains(&list.len())
                        && list
                            .iter()
                            .all(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                        && list.iter().enumerate().all(|(i, v)| !list[..i].contains(v)) => {}
                _ => schema.errors.push(violation(
                    "scopes",
                    "must be 1 to 100 unique non-empty strings",
                )),
            }
            if !matches!(b["authorization_params"], Value::Null | Value::Object(_)) {
                schema
                    .errors
                    .push(violation("authorization_params", "must be an object"));
            }
            if let Err(refused) = schema.done() {
                return refused;
            }
            let (connection, redirect_uri) = (
                connection.unwrap_or_default(),
                redirect_uri.unwrap_or_default(),
            );
            if connection != tenant.connection {
                return problem(
                    400,
                    "Bad Request",
                    "Connection is not enabled for this application",
                );
            }
            let ticket = random_id();
            let auth_session = random_id();
            st.accounts.tickets.insert(
                ticket.clone(),
                Ticket {
                    tenant: tenant.id.clone(),
                    sub,
                    connection,
                    redirect_uri,
                    state: state_param,
                    challenge,
                    auth_session: auth_session.clone(),
                    expires: now() + TICKET_TTL_S,
                    consented: false,
                },
            );
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
            // OAS complete-connected-account request body: `additionalProperties: false`,
            // auth_session <= 64, connect_code 1-46, redirect_uri, code_verifier 43-128.
            let mut schema = Schema::new(
                &b,
                &[
                    "auth_session",
                    "connect_code",
                    "redirect_uri",
                    "code_verifier",
                ],
            );
            let auth_session = schema.text("auth_session", true, 1, 64);
            let connect_code = schema.text("connect_code", true, 1, 46);
            let redirect_uri = schema.text("redirect_uri", true, 1, 2048);
            let verifier = schema.text("code_verifier", false, 43, 128);
            if let Err(refused) = schema.done() {
                return refused;
            }
            let code = connect_code.unwrap_or_default();
            let Some(ticket_id) = st.accounts.connect_codes.remove(&code) else {
                return problem(400, "Bad Request", "Invalid connect_code");
            };
            let Some(ticket) = st.accounts.tickets.remove(&ticket_id) else {
                return problem(400, "Bad Request", "Invalid connect_code");
            };
            let verifier_ok = match &ticket.challenge {
                Some(c) => verifier.is_some_and(|v| s256(&v) == *c),
                None => true,
            };
            if Some(&ticket.auth_session) != auth_session.as_ref()
                || Some(&ticket.redirect_uri) != redirect_uri.as_ref()
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
        ("GET", ["connections"]) => Response::json(
            200,
            &json!({"connections": [{"name": tenant.connection, "strategy": "oauth2", "scopes": []}]}),
        ),
        ("GET", ["accounts"]) => {
            let q = form(&r.query);
            let all = accounts_of(&st, &sub, q.get("connection").map(String::as_str));
            match page(
                &all,
                q.get("take").map(String::as_str),
                q.get("from").map(String::as_str),
            ) {
                Ok(answer) => Response::json(200, &answer),
                Err(refused) => refused,
            }
        }
        ("DELETE", ["accounts", id]) => {
            if let Some(list) = st.accounts.extra.get_mut(&sub) {
                if let Some(i) = list.iter().position(|(a, _)| a == id) {
                    list.remove(i);
                    return Response::raw(204, "application/json", Vec::new());
                }
            }
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

/// A user's connected accounts, optionally of one connection: one per connected connection,
/// then the extra ones, in a stable order.
fn accounts_of(st: &State, sub: &str, connection: Option<&str>) -> Vec<Value> {
    let mut base: Vec<&String> = st.connected.get(sub).into_iter().flatten().collect();
    base.sort();
    let extra = st.accounts.extra.get(sub).into_iter().flatten();
    base.into_iter()
        .map(|c| (account_id(sub, c), c.clone()))
        .chain(extra.cloned())
        .filter(|(_, c)| connection.is_none_or(|f| f == c))
        .map(|(id, c)| {
            json!({"id": id, "connection": c, "access_type": "offline",
                   "scopes": ["repo"], "created_at": "2026-11-27T00:00:00.000Z"})
        })
        .collect()
}

/// One page of `GET /accounts` (OAS: `take` 1-20, default 10; `from` a cursor from a previous
/// answer's `next`, which is present only when more accounts remain).
fn page(all: &[Value], take: Option<&str>, from: Option<&str>) -> Result<Value, Response> {
    let take = match take {
        None => DEFAULT_TAKE,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=MAX_TAKE).contains(&n) => n,
            _ => return Err(query_invalid("take", "must be an integer from 1 to 20")),
        },
    };
    let start = match from {
        None => 0,
        Some(cursor) => match cursor_offset(cursor) {
            Some(n) if n <= all.len() => n,
            _ => return Err(query_invalid("from", "is not a valid cursor")),
        },
    };
    let end = (start + take).min(all.len());
    let mut answer = json!({"accounts": all[start..end]});
    if end < all.len() {
        answer["next"] = json!(cursor_at(end));
    }
    Ok(answer)
}

fn query_invalid(field: &str, detail: &str) -> Response {
    let mut v = violation(field, detail);
    v["source"] = json!("query");
    invalid(vec![v])
}

/// Opaque cursors: the offset, encoded.
fn cursor_at(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn cursor_offset(cursor: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

/// Give `sub` `count` more connected accounts of `connection` (the user counts as connected).
pub(crate) fn add_accounts(st: &mut State, sub: &str, connection: &str, count: usize) {
    st.connected
        .entry(sub.to_string())
        .or_default()
        .insert(connection.to_string());
    let list = st.accounts.extra.entry(sub.to_string()).or_default();
    for _ in 0..count {
        let id = format!("cac_{}", &random_id()[..16]);
        list.push((id, connection.to_string()));
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
        let location = with_params(
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
    let code = random_id()[..24].to_string();
    st.accounts.connect_codes.insert(code.clone(), ticket_id);
    let location = with_params(
        &redirect_uri,
        &[("connect_code", &code), ("state", &state_param)],
    );
    redirect(&location, None)
}
