//! The sim: every outside party of token-vault-proxy, on loopback.
//!
//! - tenant issuers: OIDC discovery, JWKS (with rotation) and a dev endpoint that mints agent
//!   tokens with chosen claims;
//! - the Auth0 Token Vault exchange (`POST /oauth/token`), checking every literal;
//! - Okta for the Okta vault backends (STS and ID-JAG, see `okta`);
//! - an echo backend (its own port) that answers with what it received.
//!
//! It counts calls per endpoint, records what the vault and the backend saw, and can be told to
//! fail, so tests can assert "the vault was called once" or "the backend never saw the agent
//! token". Demo users: `alice` has connected accounts, `bob` has none.

pub mod authz;
pub mod envoy;
pub mod http;
pub mod keys;
pub mod myaccount;
pub mod okta;
pub mod okta_org;
pub mod web;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use http::{Request, Response};
use keys::IssuerKeys;
pub use okta::{OktaGrant, OktaVault};

pub const FEDERATED_GRANT: &str =
    "urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token";
pub const FEDERATED_TOKEN_TYPE: &str =
    "http://auth0.com/oauth/token-type/federated-connection-access-token";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";

/// What the sim must know about a tenant to play its issuer and vault.
#[derive(Debug, Clone)]
pub struct SimTenant {
    pub id: String,
    pub issuer: String,
    pub audience: String,
    pub read_scopes: Vec<String>,
    pub write_scopes: Vec<String>,
    pub default_alg: String,
    /// The connection (provider) the vault brokers tokens for, whatever the vault.
    pub connection: String,
    /// The Auth0 vault's client; `None` when the vault is Okta.
    pub vault_client_id: Option<String>,
    pub vault_client_secret: Option<String>,
    /// Auth0 domain of the vault (host:port), for the My Account API audience; empty when the
    /// vault is Okta.
    pub vault_domain: String,
    /// The Okta vault (`type: "okta-sts"` or `"id-jag"`); `None` for Auth0.
    pub okta: Option<OktaVault>,
    /// The web client of the filter's connect pages, when the tenant has them.
    pub connect_client_id: Option<String>,
    pub connect_client_secret: Option<String>,
    /// The connect pages' sign-in callback registered with Okta for the connect client
    /// (`{public_base_url}/connect/{id}/login/callback`), when the gateway's URL is known.
    pub connect_redirect_uri: Option<String>,
}

/// A client secret given inline or by environment variable name, as the filter reads it.
fn secret_of(
    section: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let s = |v: &Value| v.as_str().map(str::to_string);
    match (
        s(&section["client_secret"]),
        s(&section["client_secret_env"]),
    ) {
        (Some(v), _) => Ok(Some(v)),
        (None, Some(name)) => env(&name)
            .map(Some)
            .ok_or_else(|| format!("environment variable {name} is not set")),
        _ => Ok(None),
    }
}

impl SimTenant {
    /// Read the tenants of a filter configuration document. A secret or key given by
    /// environment variable is read from the sim's own environment, as Envoy reads it from
    /// its own.
    pub fn from_filter_config(doc: &Value) -> Result<Vec<SimTenant>, String> {
        SimTenant::from_filter_config_with(doc, &|name| std::env::var(name).ok())
    }

    /// As `from_filter_config`, with `env` resolving the `*_env` variables (tests hand Envoy
    /// its environment without setting the test process's own).
    pub fn from_filter_config_with(
        doc: &Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<SimTenant>, String> {
        let tenants = doc["tenants"].as_array().ok_or("no tenants array")?;
        let public_base = doc["settings"]["public_base_url"]
            .as_str()
            .map(|b| b.trim_end_matches('/').to_string());
        tenants
            .iter()
            .map(|t| {
                let s = |v: &Value| v.as_str().map(str::to_string);
                let list = |v: &Value| -> Vec<String> {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let vault = &t["vault"];
                let okta = match vault["type"].as_str().unwrap_or("auth0") {
                    "auth0" => None,
                    _ => Some(OktaVault::from_config(vault, env)?),
                };
                // Auth0's fields are required of an Auth0 vault, and ignored for Okta.
                let is_auth0 = okta.is_none();
                let auth0 = |v: Option<String>, what: &str| -> Result<Option<String>, String> {
                    match v {
                        _ if !is_auth0 => Ok(None),
                        Some(v) => Ok(Some(v)),
                        None => Err(format!("tenant without {what}")),
                    }
                };
                let connect = &t["connect"];
                Ok(SimTenant {
                    id: s(&t["id"]).ok_or("tenant without id")?,
                    issuer: s(&t["issuer"]).ok_or("tenant without issuer")?,
                    audience: api_identifier(t, public_base.as_deref())
                        .ok_or("tenant without resources or audience")?,
                    read_scopes: list(&t["scopes"]["read"]),
                    write_scopes: list(&t["scopes"]["write"]),
                    default_alg: list(&t["algorithms"])
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "RS256".into()),
                    connection: s(&vault["connection"]).ok_or("tenant without vault.connection")?,
                    vault_client_id: auth0(s(&vault["client_id"]), "vault.client_id")?,
                    vault_client_secret: auth0(secret_of(vault, env)?, "a vault client secret")?,
                    vault_domain: auth0(s(&vault["domain"]), "vault.domain")?.unwrap_or_default(),
                    okta,
                    connect_client_id: s(&connect["client_id"]),
                    connect_client_secret: secret_of(connect, env)?,
                    connect_redirect_uri: public_base
                        .as_ref()
                        .zip(s(&t["id"]))
                        .map(|(base, id)| format!("{base}/connect/{id}/login/callback")),
                })
            })
            .collect()
    }
}

/// The API the tenant's agent tokens are for (its Auth0 API identifier, which the Custom API
/// Client is linked to): the first of `resources` (a path joins the public URL), else
/// `audience`, as the filter resolves them.
fn api_identifier(tenant: &Value, public_base: Option<&str>) -> Option<String> {
    let first = tenant["resources"].as_array().and_then(|r| r.first());
    match (first.and_then(Value::as_str), public_base) {
        (Some(path), Some(base)) if path.starts_with('/') => Some(format!("{base}{path}")),
        (Some(url), _) => Some(url.to_string()),
        (None, _) => tenant["audience"].as_str().map(str::to_string),
    }
}

/// How a dependency misbehaves for its next calls.
#[derive(Debug, Clone)]
pub enum Fault {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Answer normally, but only after this long.
    Delay(Duration),
    /// Close the connection without an answer.
    Drop,
}

impl Fault {
    pub fn status(status: u16) -> Fault {
        Fault::Respond {
            status,
            headers: vec![],
            body: Vec::new(),
        }
    }

    /// Auth0's standard rate-limit answer: 429 with `X-RateLimit-Limit`, `-Remaining` and
    /// `-Reset` (epoch seconds) and no `Retry-After`, which Auth0 sends only with custom
    /// policies (<https://auth0.com/docs/troubleshoot/customer-support/operational-policies/rate-limit-policy>).
    pub fn auth0_rate_limited(reset_in_seconds: u64) -> Fault {
        Fault::Respond {
            status: 429,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-ratelimit-limit".into(), "50".into()),
                ("x-ratelimit-remaining".into(), "0".into()),
                (
                    "x-ratelimit-reset".into(),
                    (now() + reset_in_seconds).to_string(),
                ),
            ],
            body: serde_json::json!({
                "error": "too_many_requests",
                "error_description": "Global limit has been reached",
            })
            .to_string()
            .into_bytes(),
        }
    }

    pub fn body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Fault {
        Fault::Respond {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }
}

/// Endpoints that can be counted and faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Discovery,
    Jwks,
    Vault,
    Backend,
    /// `/authorize` and the authorization-code grant.
    Login,
    /// The My Account API.
    MyAccount,
    /// Okta's token endpoint (STS and ID-JAG leg 1).
    Okta,
    /// The resource authorization server's token endpoint (ID-JAG leg 2).
    ResourceAs,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "jwks",
            Endpoint::Vault => "vault",
            Endpoint::Backend => "backend",
            Endpoint::Login => "login",
            Endpoint::MyAccount => "my_account",
            Endpoint::Okta => "okta",
            Endpoint::ResourceAs => "resource_as",
        }
    }

    fn from_name(name: &str) -> Option<Endpoint> {
        [
            Endpoint::Discovery,
            Endpoint::Jwks,
            Endpoint::Vault,
            Endpoint::Backend,
            Endpoint::Login,
            Endpoint::MyAccount,
            Endpoint::Okta,
            Endpoint::ResourceAs,
        ]
        .into_iter()
        .find(|e| e.name() == name)
    }
}

struct FaultRule {
    fault: Fault,
    /// Calls left to fault; `None` until cleared.
    remaining: Option<u32>,
}

struct State {
    tenants: Vec<SimTenant>,
    keys: HashMap<String, IssuerKeys>,
    /// sub -> connections the user has connected.
    connected: HashMap<String, HashSet<String>>,
    counts: BTreeMap<Endpoint, u64>,
    faults: HashMap<Endpoint, FaultRule>,
    vault_requests: Vec<Value>,
    backend_requests: Vec<Request>,
    issued: u64,
    token_lifetime: u64,
    /// Every agent token minted and downstream token issued, for leak checks.
    minted: Vec<String>,
    downstream: Vec<String>,
    accounts: myaccount::Accounts,
    okta: okta::Okta,
    okta_org: okta_org::OrgServer,
    authz: authz::AuthServer,
}

impl State {
    fn is_connected(&self, sub: &str, connection: &str) -> bool {
        self.connected
            .get(sub)
            .is_some_and(|c| c.contains(connection))
    }
}

/// Options for minting an agent token.
#[derive(Debug, Clone, Default)]
pub struct Mint {
    pub tenant: String,
    pub sub: String,
    /// Space-separated scopes; `None` gives the tenant's read and write scopes.
    pub scope: Option<String>,
    /// Merged over the default claims; a `null` value removes the claim.
    pub claims: Option<Value>,
    /// Merged over the default header (`alg`, `kid`, `typ`); `null` removes a member.
    pub header: Option<Value>,
    /// Signing algorithm; default is the tenant's first.
    pub alg: Option<String>,
    /// "current" (default), "retired" or a kid.
    pub key: Option<String>,
}

pub struct Sim {
    state: Arc<Mutex<State>>,
    pub port: u16,
    pub backend_port: u16,
    stop: Arc<AtomicBool>,
}

impl Sim {
    /// Start on the given ports (0 = any free port).
    pub fn start(tenants: Vec<SimTenant>, port: u16, backend_port: u16) -> std::io::Result<Sim> {
        let keys = tenants
            .iter()
            .map(|t| Ok((t.id.clone(), IssuerKeys::try_generate(&t.id)?)))
            .collect::<Result<_, String>>()
            .map_err(std::io::Error::other)?;
        let connected = HashMap::from([
            (
                "alice".to_string(),
                tenants.iter().map(|t| t.connection.clone()).collect(),
            ),
            ("bob".to_string(), HashSet::new()),
        ]);
        let state = Arc::new(Mutex::new(State {
            keys,
            connected,
            counts: BTreeMap::new(),
            faults: HashMap::new(),
            vault_requests: Vec::new(),
            backend_requests: Vec::new(),
            issued: 0,
            token_lifetime: 3600,
            minted: Vec::new(),
            downstream: Vec::new(),
            accounts: myaccount::Accounts::default(),
            authz: authz::AuthServer::default(),
            okta: okta::Okta::new(&tenants).map_err(std::io::Error::other)?,
            okta_org: okta_org::OrgServer::default(),
            tenants,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let control = http::bind(port)?;
        let backend = http::bind(backend_port)?;
        let ports = (control.local_addr()?.port(), backend.local_addr()?.port());
        let s = Arc::clone(&state);
        http::serve(
            control,
            Arc::new(move |r| control_handler(&s, r)),
            Arc::clone(&stop),
        );
        let s = Arc::clone(&state);
        http::serve(
            backend,
            Arc::new(move |r| backend_handler(&s, r)),
            Arc::clone(&stop),
        );
        Ok(Sim {
            state,
            port: ports.0,
            backend_port: ports.1,
            stop,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn mint(&self, m: &Mint) -> Result<String, String> {
        let mut st = self.lock();
        let token = mint(&st, m)?;
        st.minted.push(token.clone());
        Ok(token)
    }

    /// Every agent token minted so far.
    pub fn minted(&self) -> Vec<String> {
        self.lock().minted.clone()
    }

    /// Every downstream token the vault issued so far.
    pub fn downstream_tokens(&self) -> Vec<String> {
        self.lock().downstream.clone()
    }

    /// Calls seen per endpoint since start (or the last reset).
    pub fn count(&self, e: Endpoint) -> u64 {
        self.lock().counts.get(&e).copied().unwrap_or(0)
    }

    /// Fault the next `times` calls of `e` (`None`: until cleared).
    pub fn fail(&self, e: Endpoint, fault: Fault, times: Option<u32>) {
        self.lock().faults.insert(
            e,
            FaultRule {
                fault,
                remaining: times,
            },
        );
    }

    pub fn heal(&self, e: Endpoint) {
        self.lock().faults.remove(&e);
    }

    /// Rotate a tenant's RSA key; returns the new kid, empty (and nothing rotated) for an
    /// unknown tenant or when no key could be made.
    pub fn rotate(&self, tenant: &str, keep_old: bool) -> String {
        let mut st = self.lock();
        st.keys
            .get_mut(tenant)
            .and_then(|k| k.rotate(tenant, keep_old).ok())
            .unwrap_or_default()
    }

    pub fn connect(&self, sub: &str, connection: &str) {
        self.lock()
            .connected
            .entry(sub.into())
            .or_default()
            .insert(connection.into());
    }

    pub fn disconnect(&self, sub: &str, connection: &str) {
        self.lock()
            .connected
            .entry(sub.into())
            .or_default()
            .remove(connection);
    }

    /// Give `sub` `count` more connected accounts of `connection`, beyond the one a
    /// connection has, so the My Account API's account list spans pages.
    pub fn add_accounts(&self, sub: &str, connection: &str, count: usize) {
        myaccount::add_accounts(&mut self.lock(), sub, connection, count);
    }

    /// Whether `sub` has connected `connection`.
    pub fn is_connected(&self, sub: &str, connection: &str) -> bool {
        self.lock().is_connected(sub, connection)
    }

    /// Let the provider consent page approve by itself (a headless browser cannot click).
    pub fn set_auto_consent(&self, on: bool) {
        self.lock().accounts.auto_consent = on;
    }

    /// Treat every browser as signed in as `sub` at the login page (a headless browser cannot
    /// type).
    pub fn set_auto_login(&self, sub: Option<&str>) {
        self.lock().accounts.auto_login = sub.map(str::to_string);
    }

    /// Lifetime (`expires_in`) of downstream tokens the vault issues from now on.
    /// Re-point a tenant's API identifier (e.g. once the gateway's public URL is known).
    /// Register the connect pages' sign-in callback of a gateway at `base` with Okta (the
    /// gateway's URL is known only once it listens).
    pub fn set_public_base(&self, base: &str) {
        for t in &mut self.lock().tenants {
            t.connect_redirect_uri = Some(format!("{base}/connect/{}/login/callback", t.id));
        }
    }

    pub fn set_audience(&self, tenant: &str, audience: &str) {
        let mut st = self.lock();
        if let Some(t) = st.tenants.iter_mut().find(|t| t.id == tenant) {
            t.audience = audience.to_string();
        }
    }

    /// The tenants' Resource Parameter Compatibility Profile (Auth0 tenant setting).
    pub fn set_resource_profile(&self, profile: authz::ResourceProfile) {
        self.lock().authz.profile = profile;
    }

    /// The tenants' `client_id_metadata_document_supported` setting (Auth0; off by default).
    pub fn set_cimd_supported(&self, on: bool) {
        self.lock().authz.cimd_supported = on;
    }

    /// An administrator imports the Client ID Metadata Document at `url` for a tenant (Auth0's
    /// manual CIMD registration): the URL becomes a client id. Refused as Auth0 would refuse it.
    pub fn import_cimd(&self, tenant: &str, url: &str, document: &Value) -> Result<(), String> {
        authz::import_cimd(&mut self.lock(), tenant, url, document)
    }

    /// Dynamic client registrations received.
    pub fn registrations(&self) -> u64 {
        self.lock().authz.registrations
    }

    pub fn set_token_lifetime(&self, seconds: u64) {
        self.lock().token_lifetime = seconds;
    }

    /// JSON bodies the vault received.
    pub fn vault_requests(&self) -> Vec<Value> {
        self.lock().vault_requests.clone()
    }

    /// Form bodies Okta's and the resource authorization server's token endpoints received.
    pub fn okta_requests(&self) -> Vec<HashMap<String, String>> {
        self.lock().okta.requests.clone()
    }

    /// Requests the echo backend received.
    pub fn backend_requests(&self) -> Vec<Request> {
        self.lock().backend_requests.clone()
    }

    pub fn jwks(&self, tenant: &str) -> Value {
        self.lock()
            .keys
            .get(tenant)
            .map(IssuerKeys::jwks)
            .unwrap_or(Value::Null)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        http::wake(self.port);
        http::wake(self.backend_port);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mint(st: &State, m: &Mint) -> Result<String, String> {
    let tenant = st
        .tenants
        .iter()
        .find(|t| t.id == m.tenant)
        .ok_or_else(|| format!("unknown tenant '{}'", m.tenant))?;
    let keys = st.keys.get(&tenant.id).ok_or("no keys")?;
    let alg = m.alg.clone().unwrap_or_else(|| tenant.default_alg.clone());
    let key = m.key.clone().unwrap_or_else(|| "current".into());
    let scope = m.scope.clone().unwrap_or_else(|| {
        [tenant.read_scopes.clone(), tenant.write_scopes.clone()]
            .concat()
            .join(" ")
    });
    let now = now();
    let mut claims = json!({
        "iss": tenant.issuer, "sub": m.sub, "aud": tenant.audience,
        "iat": now, "exp": now + 3600, "scope": scope, "azp": "sim-agent",
    });
    merge(&mut claims, m.claims.as_ref());
    let mut header = json!({"alg": alg, "typ": "JWT", "kid": keys.kid_for(&alg, &key)});
    merge(&mut header, m.header.as_ref());
    keys.sign(&alg, &key, &header, &claims)
}

fn merge(target: &mut Value, overlay: Option<&Value>) {
    if let (Some(t), Some(Value::Object(o))) = (target.as_object_mut(), overlay) {
        for (k, v) in o {
            if v.is_null() {
                t.remove(k);
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Count the call and return the fault to apply, if any.
fn enter(state: &Mutex<State>, e: Endpoint) -> Option<Fault> {
    let mut st = lock(state);
    *st.counts.entry(e).or_default() += 1;
    let rule = st.faults.get_mut(&e)?;
    let fault = rule.fault.clone();
    if let Some(n) = rule.remaining.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            st.faults.remove(&e);
        }
    }
    Some(fault)
}

/// Apply a fault; `Ok(())` means "answer normally" (possibly after a delay).
fn faulted(fault: Option<Fault>) -> Result<(), Response> {
    match fault {
        None => Ok(()),
        Some(Fault::Delay(d)) => {
            std::thread::sleep(d);
            Ok(())
        }
        Some(Fault::Drop) => Err(Response::Drop),
        Some(Fault::Respond {
            status,
            headers,
            body,
        }) => Err(Response::Full {
            status,
            headers,
            body,
        }),
    }
}

fn control_handler(state: &Arc<Mutex<State>>, r: Request) -> Response {
    let segments: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    match (r.method.as_str(), segments.as_slice()) {
        ("GET", ["issuers", tenant, ".well-known", "openid-configuration"]) => {
            if let Err(resp) = faulted(enter(state, Endpoint::Discovery)) {
                return resp;
            }
            authz::metadata(state, tenant)
        }
        // RFC 8414 section 3.1: the well-known path inserted before the issuer's path.
        ("GET", [".well-known", "oauth-authorization-server", "issuers", tenant]) => {
            authz::metadata(state, tenant)
        }
        ("POST", ["issuers", tenant, "oidc", "register"]) => authz::register(state, tenant, &r),
        ("GET", ["issuers", tenant, "authorize"])
        | ("POST", ["issuers", tenant, "authorize", "login"]) => {
            authz::authorize(state, tenant, &r)
        }
        ("POST", ["issuers", tenant, "oauth", "token"]) => authz::token(state, tenant, &r),
        ("GET", ["issuers", tenant, "jwks.json"]) => {
            if let Err(resp) = faulted(enter(state, Endpoint::Jwks)) {
                return resp;
            }
            match lock(state).keys.get(*tenant) {
                Some(k) => Response::json(200, &k.jwks()),
                None => Response::json(404, &json!({"error": "not_found"})),
            }
        }
        ("POST", ["oauth", "token"])
            if r.header("content-type")
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
                && okta::is_jwt_bearer(&r) =>
        {
            if let Err(resp) = faulted(enter(state, Endpoint::ResourceAs)) {
                return resp;
            }
            okta::auth0_resource_token(state, &r)
        }
        ("POST", ["oauth", "token"])
            if r.header("content-type")
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) =>
        {
            if let Err(resp) = faulted(enter(state, Endpoint::Login)) {
                return resp;
            }
            myaccount::code_grant(state, &r)
        }
        ("POST", ["oauth", "token"]) => {
            if let Err(resp) = faulted(enter(state, Endpoint::Vault)) {
                return resp;
            }
            vault_exchange(state, &r)
        }
        ("GET", ["authorize"]) | ("POST", ["authorize", "login"]) => {
            if let Err(resp) = faulted(enter(state, Endpoint::Login)) {
                return resp;
            }
            myaccount::authorize(state, &r)
        }
        (_, ["me", "v1", "connected-accounts", rest @ ..]) => {
            if let Err(resp) = faulted(enter(state, Endpoint::MyAccount)) {
                return resp;
            }
            myaccount::my_account(state, &r, rest)
        }
        ("GET", ["connected-accounts", "connect"])
        | ("POST", ["connected-accounts", "approve"]) => myaccount::consent(state, &r),
        ("GET", ["okta", "oauth2", "v1", "authorize"])
        | ("POST", ["okta", "oauth2", "v1", "authorize", "login"]) => {
            if let Err(resp) = faulted(enter(state, Endpoint::Login)) {
                return resp;
            }
            okta_org::authorize(state, &r)
        }
        ("POST", ["okta", "oauth2", "v1", "token"]) if okta_org::is_code_grant(&r) => {
            if let Err(resp) = faulted(enter(state, Endpoint::Login)) {
                return resp;
            }
            okta_org::token(state, &r)
        }
        ("GET", ["okta", "oauth2", "v1", "keys"]) => okta_org::keys(state),
        ("POST", ["okta", "oauth2", "v1", "token"]) => {
            if let Err(resp) = faulted(enter(state, Endpoint::Okta)) {
                return resp;
            }
            okta::token(state, &r)
        }
        ("GET", ["okta", "interact"]) | ("POST", ["okta", "interact", "approve"]) => {
            okta::interact(state, &r)
        }
        ("POST", ["resource-as", "oauth2", "v1", "token"]) => {
            if let Err(resp) = faulted(enter(state, Endpoint::ResourceAs)) {
                return resp;
            }
            okta::resource_token(state, &r)
        }
        ("POST", ["dev", "token"]) => {
            let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
                return Response::json(400, &json!({"error": "body must be JSON"}));
            };
            let s = |k: &str| body[k].as_str().map(str::to_string);
            let m = Mint {
                tenant: s("tenant").unwrap_or_else(|| "github".into()),
                sub: s("sub").unwrap_or_else(|| "alice".into()),
                scope: s("scope").filter(|v| !v.is_empty()),
                claims: body.get("claims").cloned(),
                header: body.get("header").cloned(),
                alg: s("alg"),
                key: s("key"),
            };
            let mut st = lock(state);
            match mint(&st, &m) {
                Ok(token) => {
                    st.minted.push(token.clone());
                    Response::json(200, &json!({"access_token": token}))
                }
                Err(e) => Response::json(400, &json!({"error": e})),
            }
        }
        ("GET", ["_sim", "stats"]) => {
            let st = lock(state);
            let counts: serde_json::Map<String, Value> = st
                .counts
                .iter()
                .map(|(k, v)| (k.name().to_string(), json!(v)))
                .collect();
            Response::json(200, &Value::Object(counts))
        }
        ("POST", ["_sim", "fail", endpoint]) => {
            let Some(e) = Endpoint::from_name(endpoint) else {
                return Response::json(404, &json!({"error": "no such endpoint"}));
            };
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let fault = match body["mode"].as_str() {
                Some("drop") => Fault::Drop,
                Some("delay") => {
                    Fault::Delay(Duration::from_millis(body["ms"].as_u64().unwrap_or(10_000)))
                }
                _ => Fault::body(
                    body["status"].as_u64().unwrap_or(500) as u16,
                    "text/plain",
                    body["body"].as_str().unwrap_or("sim fault"),
                ),
            };
            lock(state).faults.insert(
                e,
                FaultRule {
                    fault,
                    remaining: body["times"].as_u64().map(|n| n as u32),
                },
            );
            Response::json(200, &json!({"ok": true}))
        }
        ("POST", ["_sim", "heal"]) => {
            lock(state).faults.clear();
            Response::json(200, &json!({"ok": true}))
        }
        ("POST", ["_sim", "accounts", sub, connection]) => {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let count = body["count"].as_u64().unwrap_or(1).min(1000) as usize;
            myaccount::add_accounts(&mut lock(state), sub, connection, count);
            Response::json(200, &json!({"ok": true}))
        }
        ("POST", ["_sim", "connect", sub, connection]) => {
            lock(state)
                .connected
                .entry(sub.to_string())
                .or_default()
                .insert(connection.to_string());
            Response::json(200, &json!({"ok": true}))
        }
        _ => Response::json(404, &json!({"error": "not_found"})),
    }
}

/// The Auth0 federated-connection access-token exchange, strict about every literal.
fn vault_exchange(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    let err = |status: u16, error: &str, description: &str| {
        Response::json(
            status,
            &json!({"error": error, "error_description": description}),
        )
    };
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return err(
            400,
            "invalid_request",
            "Content-Type must be application/json",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return err(400, "invalid_request", "body is not JSON");
    };
    let mut st = lock(state);
    st.vault_requests.push(body.clone());
    let s = |k: &str| body[k].as_str().unwrap_or_default();
    if s("grant_type") != FEDERATED_GRANT {
        return err(400, "unsupported_grant_type", "grant type not supported");
    }
    if s("requested_token_type") != FEDERATED_TOKEN_TYPE {
        return err(400, "invalid_request", "requested_token_type is invalid");
    }
    if body.get("scope").is_some() {
        return err(
            400,
            "invalid_request",
            "scope is not accepted for this grant",
        );
    }
    let Some(tenant) = st
        .tenants
        .iter()
        .find(|t| t.vault_client_id.as_deref() == Some(s("client_id")))
        .cloned()
    else {
        return err(401, "invalid_client", "Client authentication failed");
    };
    if tenant.vault_client_secret.as_deref() != Some(s("client_secret")) {
        return err(401, "invalid_client", "Client authentication failed");
    }
    if s("connection") != tenant.connection {
        return err(
            400,
            "invalid_request",
            "connection is not enabled for this client",
        );
    }
    let sub = match s("subject_token_type") {
        // Only Auth0's own access tokens, which Auth0 signs RS256 or PS256 (HS256 aside):
        // https://auth0.com/docs/get-started/applications/signing-algorithms
        ACCESS_TOKEN_TYPE => {
            let auth0_signed = keys::header_of(s("subject_token"))
                .is_some_and(|h| matches!(h["alg"].as_str(), Some("RS256" | "PS256")));
            match subject_claims(&st, &tenant, s("subject_token"), &tenant.audience) {
                Some(c) if auth0_signed => c["sub"].as_str().unwrap_or_default().to_string(),
                _ => return err(401, "invalid_grant", "Invalid subject token"),
            }
        }
        // The sim's refresh tokens are "rt-<sub>".
        REFRESH_TOKEN_TYPE => match s("subject_token").strip_prefix("rt-") {
            Some(sub) if !sub.is_empty() => sub.to_string(),
            _ => return err(401, "invalid_grant", "Invalid refresh token"),
        },
        _ => return err(400, "invalid_request", "subject_token_type is invalid"),
    };
    if !st.is_connected(&sub, &tenant.connection) {
        return err(
            401,
            "federated_connection_refresh_token_not_found",
            "Federated connection Refresh Token not found.",
        );
    }
    let token = issue_token(&mut st, "sim", &tenant.connection, &sub);
    Response::json(
        200,
        &json!({
            "access_token": token,
            "expires_in": st.token_lifetime,
            "scope": "repo read:user",
            "issued_token_type": FEDERATED_TOKEN_TYPE,
            "token_type": "Bearer",
        }),
    )
}

/// The claims of a subject token the tenant's issuer signed for `audience`, unexpired.
fn subject_claims(st: &State, tenant: &SimTenant, token: &str, audience: &str) -> Option<Value> {
    let claims = keys::claims_of(token)?;
    let audience = json!(audience);
    let aud_ok = claims["aud"] == audience
        || claims["aud"]
            .as_array()
            .is_some_and(|a| a.contains(&audience));
    let valid = st.keys.get(&tenant.id).is_some_and(|k| k.verifies(token))
        && aud_ok
        && claims["exp"].as_u64().is_some_and(|e| e > now());
    valid.then_some(claims)
}

/// A new downstream token, `<prefix>_<connection>_<sub>_<n>`.
fn issue_token(st: &mut State, prefix: &str, connection: &str, sub: &str) -> String {
    st.issued += 1;
    let connection = connection.replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let token = format!("{prefix}_{connection}_{sub}_{}", st.issued);
    // Every issued token is checked for in Envoy's log by the tests.
    st.downstream.push(token.clone());
    token
}

/// The echo backend: reports what it received. `/stream` streams the answer in chunks.
fn backend_handler(state: &Arc<Mutex<State>>, r: Request) -> Response {
    if let Err(resp) = faulted(enter(state, Endpoint::Backend)) {
        return resp;
    }
    lock(state).backend_requests.push(r.clone());
    if r.path.ends_with("/stream") {
        let chunks = (1..=3)
            .map(|i| format!("data: event {i}\n\n").into_bytes())
            .collect();
        return Response::Stream {
            status: 200,
            content_type: "text/event-stream".into(),
            chunks,
            pause: Duration::from_millis(150),
        };
    }
    let headers: Vec<Value> = r.headers.iter().map(|(n, v)| json!([n, v])).collect();
    let mut response_headers = vec![("content-type".to_string(), "application/json".to_string())];
    // Let MCP session headers round-trip, as an MCP server would; an `initialize` opens a
    // session (Streamable HTTP: the server assigns `Mcp-Session-Id` on its answer).
    for name in ["mcp-session-id", "mcp-protocol-version"] {
        if let Some(v) = r.header(name) {
            response_headers.push((name.to_string(), v.to_string()));
        }
    }
    let initialize =
        serde_json::from_slice::<Value>(&r.body).is_ok_and(|m| m["method"] == "initialize");
    if initialize && r.header("mcp-session-id").is_none() {
        let n = lock(state).backend_requests.len();
        response_headers.push(("mcp-session-id".into(), format!("sim-session-{n}")));
    }
    let body = json!({
        "method": r.method,
        "path": r.path,
        "query": r.query,
        "headers": headers,
        "body": String::from_utf8_lossy(&r.body),
    });
    Response::Full {
        status: 200,
        headers: response_headers,
        body: body.to_string().into_bytes(),
    }
}
