//! The Connected Accounts flow, served by the filter itself under `/connect/{tenant}/`.
//!
//! An agent refused with "connected account required" gets a link to `start`. The browser
//! logs in at the tenant's Auth0 (authorization code + PKCE, My Account API audience), the
//! filter checks the user is the one the link was made for, asks the My Account API for a
//! connect ticket, sends the browser to the provider, and on return completes the connection
//! and clears the user's cached "not connected" answer. `accounts` lists and disconnects.
//!
//! For an Okta STS tenant the link remembers Okta's `interaction_uri`: the browser signs in at
//! the Okta org (OIDC, code + PKCE), the same-user check runs, and only then is the browser
//! sent to Okta's consent ([`okta`]). Okta's URL never reaches the agent.
//!
//! Sans-IO: [`handle`] and [`resume`] return a reply or one call-out to make; `filter/` does
//! the I/O. Flow state travels with the browser and the agent, sealed ([`sealed`]) under keys
//! every replica is configured with, so any worker of any replica, restarted or not, takes
//! the next step; nothing of it is kept in the gateway.

pub mod form;
pub mod okta;
pub mod pages;
pub mod records;
pub mod sealed;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::cache;
use crate::callout::{CalloutRequest, CalloutResponse};
use crate::config::{ConnectConfig, ConnectProvider, SealingKeys, Tenant};
use crate::host::Host;
use crate::metrics::Counter;
use crate::reply::Reply;
use crate::secret::{random_token, sha256};
use crate::urlencoded;
use records::{AfterLogin, Consent, Link, Login, Session};
use sealed::Purpose;

const LOGIN_COOKIE: &str = "tvp_login";
const SESSION_COOKIE: &str = "tvp_session";
const CONSENT_COOKIE: &str = "tvp_consent";
const MY_ACCOUNT_SCOPES: &str =
    "openid create:me:connected_accounts read:me:connected_accounts delete:me:connected_accounts";
const CONNECTED_ACCOUNTS: &str = "/me/v1/connected-accounts";
/// The accounts list's largest page (`take`, My Account API OpenAPI: default 10, max 20).
const ACCOUNTS_PAGE_SIZE: u32 = 20;
/// Pages followed before giving up: a `next` that never ends must not loop the filter.
pub const MAX_ACCOUNT_PAGES: u32 = 10;
/// Longest `connect_code` the My Account API takes (`/complete`, OpenAPI `maxLength` 46).
const MAX_CONNECT_CODE: usize = 46;

/// Everything a step needs to know about where it runs.
pub struct Ctx<'a> {
    pub host: &'a dyn Host,
    pub tenant: &'a Tenant,
    pub connect: &'a ConnectConfig,
    /// The keys sealing what the browser carries (`settings.sealing_key_env`).
    pub keys: &'a SealingKeys,
    /// Public URL of the gateway, without a trailing slash.
    pub base: &'a str,
    /// `settings.allow_insecure_connect_cookies`: serve the pages where their cookies cannot
    /// be `__Host-` cookies (a demo on plain http).
    pub allow_insecure_cookies: bool,
    pub now_ms: u64,
}

impl Ctx<'_> {
    fn url(&self, page: &str) -> String {
        format!("{}/connect/{}{page}", self.base, self.tenant.id)
    }

    fn base_path(&self) -> &str {
        self.base
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("")
    }

    /// `scheme://authority` of the gateway: what a browser sends as `Origin` from its pages.
    fn origin(&self) -> &str {
        let path = self.base_path().len();
        &self.base[..self.base.len() - path]
    }

    /// On an https origin the cookies are `__Host-` cookies (Secure, `Path=/`, no `Domain`):
    /// no sibling subdomain or plain-http page can plant one (session fixation, cookie
    /// tossing). One per tenant.
    fn host_cookies(&self) -> bool {
        crate::config::host_cookie_origin(self.base)
    }

    fn cookie_name(&self, name: &str) -> String {
        if self.host_cookies() {
            format!("__Host-{name}-{}", self.tenant.id)
        } else {
            name.to_string()
        }
    }

    /// A cookie of this tenant's connect pages.
    fn cookie(&self, name: &str, value: &str, max_age_s: u64) -> String {
        let name = self.cookie_name(name);
        let (path, secure) = if self.host_cookies() {
            ("/".to_string(), "; Secure")
        } else if self.base.starts_with("https://") {
            (
                format!("{}/connect/{}/", self.base_path(), self.tenant.id),
                "; Secure",
            )
        } else {
            (
                format!("{}/connect/{}/", self.base_path(), self.tenant.id),
                "",
            )
        };
        format!("{name}={value}; Path={path}; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{secure}")
    }

    fn call(&self, method: &'static str, path: &str, bearer: Option<&str>) -> CalloutRequest {
        let mut headers = vec![("accept", "application/json".to_string())];
        if let Some(token) = bearer {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        CalloutRequest {
            cluster: self.tenant.vault.cluster.clone(),
            method,
            authority: self.tenant.vault.domain.clone(),
            path: path.to_string(),
            headers,
            body: None,
        }
    }

    fn call_json(&self, path: &str, bearer: &str, body: &Value) -> CalloutRequest {
        let mut request = self.call("POST", path, Some(bearer));
        request
            .headers
            .push(("content-type", "application/json".into()));
        request.body = Some(body.to_string().into_bytes());
        request
    }

    fn count(&self, counter: Counter) {
        self.host.count(&self.tenant.id, counter);
    }

    /// `value` sealed for `purpose`; `None` without randomness.
    fn seal<T: serde::Serialize>(&self, purpose: Purpose, value: &T) -> Option<String> {
        sealed::seal(self.keys, purpose, value, sealed::nonce()?)
    }

    fn open<T: serde::de::DeserializeOwned>(&self, purpose: Purpose, text: &str) -> Option<T> {
        sealed::open(self.keys, purpose, text)
    }
}

/// What a browser request to the connect pages carries.
pub struct Incoming<'a> {
    pub method: &'a str,
    /// The path after `/connect/{tenant}`, without the query.
    pub page: &'a str,
    pub query: &'a str,
    pub cookies: &'a [&'a [u8]],
    /// `Sec-Fetch-Site` and `Origin`: set by the browser, never by a page or a cookie.
    pub fetch_site: Option<&'a str>,
    pub origin: Option<&'a str>,
}

pub enum Outcome {
    Reply(Reply),
    /// Make this call-out, then [`resume`] with its answer.
    Call(CalloutRequest, Box<Pending>),
}

/// What a call-out's answer continues.
pub enum Pending {
    /// The authorization code is being exchanged for the user's My Account token.
    Login(Login),
    /// Okta: the org's keys are being fetched to verify the sign-in's ID token.
    OktaKeys {
        login: Login,
        id_token: String,
        lifetime_ms: u64,
    },
    /// A connect ticket is being asked for.
    Connect {
        /// The session that started it: the callback must come from the same one.
        session_id: String,
        link: Option<String>,
        downstream_key: String,
        state: String,
        verifier: String,
        redirect_uri: String,
    },
    /// The provider consented; the connection is being completed.
    Complete(Consent),
    /// A page of the accounts list; `accounts` holds the earlier pages' rows.
    List {
        session: Session,
        accounts: Vec<Account>,
        pages: u32,
    },
    Delete(Session),
}

/// A connected account as the accounts page shows it: id and creation time.
pub type Account = (String, String);

fn call(request: CalloutRequest, pending: Pending) -> Outcome {
    Outcome::Call(request, Box::new(pending))
}

/// Why a link or state did not lead anywhere: fixed sentences, nothing from the request.
fn expired() -> Outcome {
    Outcome::Reply(pages::failed(
        400,
        "This link has expired or was already used",
        "Ask your agent to try again: it will give you a new link.",
    ))
}

fn other_browser() -> Outcome {
    Outcome::Reply(pages::failed(
        400,
        "This step did not start in this browser",
        "Open the link your agent gave you again, in the browser you want to use.",
    ))
}

fn upstream_failed(what: &str) -> Outcome {
    Outcome::Reply(pages::failed(
        502,
        "Something went wrong",
        &format!("The identity provider refused to {what}. Please try again later."),
    ))
}

fn redirect(location: &str, cookies: Vec<String>) -> Outcome {
    let mut headers = vec![
        ("location", location.to_string()),
        ("cache-control", "no-store".to_string()),
        ("referrer-policy", "no-referrer".to_string()),
    ];
    headers.extend(cookies.into_iter().map(|c| ("set-cookie", c)));
    Outcome::Reply(Reply {
        status: 302,
        headers,
        body: Vec::new(),
    })
}

fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()))
}

fn no_randomness() -> Outcome {
    Outcome::Reply(pages::failed(
        500,
        "Something went wrong",
        "The gateway could not create a secure random value.",
    ))
}

/// The connect link for a user the vault reported as not connected: the link's record sealed
/// into the URL itself (bound to tenant and user, for `LINK_TTL_MS`), so any replica opens it.
/// `interaction_uri` is the vault's own consent page (Okta), reached only through the link.
/// Returns a short id for the link (for MCP's `elicitationId`) and the URL; `None` when no
/// random value could be made.
pub fn offer(
    keys: &SealingKeys,
    tenant: &Tenant,
    base: &str,
    sub: &str,
    downstream_key: &str,
    interaction_uri: Option<&str>,
    now_ms: u64,
) -> Option<(String, String)> {
    let link = Link {
        tenant: tenant.id.clone(),
        sub: sub.to_string(),
        downstream_key: downstream_key.to_string(),
        interaction_uri: interaction_uri.map(str::to_string),
        expires_ms: now_ms.saturating_add(records::LINK_TTL_MS),
    };
    let sealed = sealed::seal(keys, Purpose::Link, &link, sealed::nonce()?)?;
    let url = format!("{base}/connect/{}/start?id={sealed}", tenant.id);
    Some((sealed::digest(&sealed), url))
}

/// The user a link can be offered for, if any: the agent token must name them
/// (`connect.user_claim`), and an Okta tenant needs Okta's interaction URL to lead to (without
/// one the user is told to connect, with no link).
pub fn link_for<'u>(
    tenant: &Tenant,
    user: Option<&'u str>,
    interaction_uri: Option<&str>,
) -> Option<&'u str> {
    let provider = &tenant.connect.as_ref()?.provider;
    let leads_somewhere = match provider {
        ConnectProvider::Auth0 { .. } => true,
        ConnectProvider::Okta { .. } => interaction_uri.is_some(),
    };
    user.filter(|u| !u.is_empty() && leads_somewhere)
}

/// A browser request to `/connect/{tenant}{page}`.
pub fn handle(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Outcome {
    if let Some(refusal) = refused_browser_request(ctx, inc) {
        return refusal;
    }
    if let ConnectProvider::Okta { .. } = ctx.connect.provider {
        return okta::handle(ctx, inc);
    }
    match (inc.method, inc.page) {
        // From an agent's link: bound to the link's user, so a GET is safe.
        ("GET", "/start") if urlencoded::param(inc.query, "id").is_some() => start(ctx, inc),
        // Connecting for yourself changes state: only the accounts page's button (a POST with
        // the session's anti-CSRF value) does it; a bare GET shows that page.
        ("GET", "/start") => redirect(&ctx.url("/accounts"), Vec::new()),
        ("POST", "/start") => match session(ctx, inc) {
            Some(s) if urlencoded::param(inc.query, "csrf").as_deref() == Some(s.csrf.as_str()) => {
                start(ctx, inc)
            }
            Some(_) => other_browser(),
            None => Outcome::Reply(pages::failed(
                401,
                "You are not signed in",
                "Open the connected accounts page again to sign in.",
            )),
        },
        ("GET", "/login/callback") => login_callback(ctx, inc),
        ("GET", "/callback") => consent_callback(ctx, inc),
        ("GET", "/accounts") => match session(ctx, inc) {
            Some(s) => {
                let path = accounts_path(&ctx.tenant.vault.connection, None);
                let request = ctx.call("GET", &path, Some(&s.token));
                let pending = Pending::List {
                    session: s,
                    accounts: Vec::new(),
                    pages: 1,
                };
                call(request, pending)
            }
            None => login(ctx, AfterLogin::Accounts, false),
        },
        ("POST", "/accounts/delete") => delete(ctx, inc),
        _ => not_found(),
    }
}

/// The checks before any page: where the pages' cookies can be planted, and what a planted
/// cookie or another site's form cannot pass. `None` when the request may go on.
fn refused_browser_request(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Option<Outcome> {
    // Configuration refuses a public URL of this kind; a URL taken from the request can still
    // be one (`resource_from_request` on plain http).
    if !ctx.host_cookies() && !ctx.allow_insecure_cookies {
        ctx.count(Counter::ConnectInsecureOrigin);
        return Some(Outcome::Reply(pages::failed(
            403,
            "Not available at this address",
            "Connecting accounts works only at the gateway's https address.",
        )));
    }
    // Two cookies of one of our names: the browser has ours and one planted next to it by a
    // sibling subdomain (cookie tossing), and we cannot tell which is which. Nothing is read
    // and nothing changes; clearing ours would leave only the planted one.
    if [LOGIN_COOKIE, SESSION_COOKIE, CONSENT_COOKIE]
        .iter()
        .any(|name| form::cookie_count(inc.cookies, &ctx.cookie_name(name)) > 1)
    {
        ctx.count(Counter::ConnectDuplicateCookie);
        return Some(Outcome::Reply(pages::failed(
            400,
            "This browser sent conflicting cookies",
            "It has two cookies of these pages under one name: another site under the same \
             domain may have set one. Clear this site's cookies, then open the link again.",
        )));
    }
    // Every POST is one of our forms, sent from our own pages: a form on another site (a
    // sibling subdomain that planted its own session and knows its anti-CSRF value) is
    // refused on what the browser says about where it came from.
    if inc.method == "POST" && !from_our_pages(ctx, inc) {
        ctx.count(Counter::ConnectCrossOrigin);
        return Some(Outcome::Reply(pages::failed(
            403,
            "This form did not come from these pages",
            "Open the connected accounts page and use its buttons.",
        )));
    }
    None
}

/// Whether a browser request comes from the gateway's own pages, as far as the browser says:
/// `Sec-Fetch-Site` when sent (Fetch Metadata), else an `Origin` other than `null` (our pages
/// send no referrer, and browsers then send `Origin: null` on their POSTs). A request with
/// neither (not a browser, or one too old to send them) still needs the anti-CSRF value.
fn from_our_pages(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> bool {
    match (inc.fetch_site, inc.origin) {
        (Some(site), _) => site.eq_ignore_ascii_case("same-origin"),
        (None, Some(origin)) if origin != "null" => {
            without_default_port(origin).eq_ignore_ascii_case(without_default_port(ctx.origin()))
        }
        (None, _) => true,
    }
}

/// An origin as browsers serialise it: without the scheme's default port.
fn without_default_port(origin: &str) -> &str {
    let default = if origin.starts_with("https://") {
        ":443"
    } else {
        ":80"
    };
    origin.strip_suffix(default).unwrap_or(origin)
}

fn not_found() -> Outcome {
    Outcome::Reply(pages::failed(
        404,
        "Not found",
        "There is no such page here.",
    ))
}

/// The signed-in session of this browser for this tenant, opened from its cookie.
fn session(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Option<Session> {
    let sealed = form::cookie(inc.cookies, &ctx.cookie_name(SESSION_COOKIE))?;
    let s: Session = ctx.open(Purpose::Session, &sealed)?;
    (s.tenant == ctx.tenant.id && s.expires_ms > ctx.now_ms).then_some(s)
}

/// Who is starting: the link (if any, of this tenant) and this browser's signed-in session
/// of the link's user. Otherwise the answer: sign in, the link is gone, or the wrong user.
struct Starter {
    link_id: Option<String>,
    link: Option<Link>,
    session: Session,
}

fn starter(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Result<Starter, Box<Outcome>> {
    let link_id = urlencoded::param(inc.query, "id");
    let link = match &link_id {
        Some(id) => match ctx.open::<Link>(Purpose::Link, id) {
            Some(l) if l.tenant == ctx.tenant.id && l.expires_ms > ctx.now_ms => Some(l),
            _ => return Err(Box::new(expired())),
        },
        None => None,
    };
    // `fresh`: the user asked to sign in again (after being signed in as someone else).
    let fresh = urlencoded::param(inc.query, "fresh").is_some();
    let session = session(ctx, inc).filter(|_| !fresh);
    let Some(s) = session else {
        return Err(Box::new(login(
            ctx,
            AfterLogin::Connect { link: link_id },
            fresh,
        )));
    };
    if let (Some(l), Some(id)) = (&link, &link_id) {
        if l.sub != s.sub {
            ctx.count(Counter::ConnectWrongUser);
            // Forget this browser's session, and offer a sign-in that asks for credentials
            // again (otherwise single sign-on would log the same user back in).
            let retry = ctx.url(&format!("/start?id={}&fresh=1", urlencoded::encode(id)));
            let mut page = pages::wrong_user(&retry);
            page.headers
                .push(("set-cookie", ctx.cookie(SESSION_COOKIE, "", 0)));
            return Err(Box::new(Outcome::Reply(page)));
        }
    }
    Ok(Starter {
        link_id,
        link,
        session: s,
    })
}

fn start(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Outcome {
    let Starter {
        link_id,
        link,
        session: s,
    } = match starter(ctx, inc) {
        Ok(s) => s,
        Err(outcome) => return *outcome,
    };
    let (Some(state), Some(verifier)) = (random_token(), random_token()) else {
        return no_randomness();
    };
    let downstream_key = match &link {
        Some(l) => l.downstream_key.clone(),
        None => cache::downstream_key_for(ctx.tenant, &ctx.tenant.issuer, &s.sub, None),
    };
    let redirect_uri = ctx.url("/callback");
    let mut body = json!({
        "connection": ctx.tenant.vault.connection,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": pkce_challenge(&verifier),
        "code_challenge_method": "S256",
    });
    if !ctx.connect.scopes.is_empty() {
        body["scopes"] = json!(ctx.connect.scopes);
    }
    let request = ctx.call_json(&format!("{CONNECTED_ACCOUNTS}/connect"), &s.token, &body);
    ctx.count(Counter::ConnectStarted);
    call(
        request,
        Pending::Connect {
            session_id: s.id.clone(),
            link: link_id,
            downstream_key,
            state,
            verifier,
            redirect_uri,
        },
    )
}

/// Send the browser to log in. The sign-in (PKCE verifier, where to go next) is sealed in a
/// cookie only this browser has, and `state` is its digest: the callback must come from it.
fn login(ctx: &Ctx<'_>, then: AfterLogin, fresh: bool) -> Outcome {
    let Some(verifier) = random_token() else {
        return no_randomness();
    };
    let record = Login {
        tenant: ctx.tenant.id.clone(),
        verifier: verifier.clone(),
        then,
        expires_ms: ctx.now_ms.saturating_add(records::STATE_TTL_MS),
    };
    let Some(binding) = ctx.seal(Purpose::Login, &record) else {
        return no_randomness();
    };
    let state = sealed::digest(&binding);
    let redirect_uri = ctx.url("/login/callback");
    let challenge = pkce_challenge(&verifier);
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", ctx.connect.client_id.as_str()),
        ("redirect_uri", &redirect_uri),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    let authorize = match &ctx.connect.provider {
        ConnectProvider::Auth0 {
            my_account_audience,
        } => {
            pairs.push(("scope", MY_ACCOUNT_SCOPES));
            pairs.push(("audience", my_account_audience));
            "/authorize"
        }
        // Sign-in only: Okta's consent needs no API token of ours.
        ConnectProvider::Okta { .. } => {
            pairs.push(("scope", "openid"));
            okta::AUTHORIZE_PATH
        }
    };
    if fresh {
        pairs.push(("prompt", "login"));
    }
    let location = format!(
        "{}{authorize}?{}",
        ctx.connect.login_url,
        urlencoded::encode_pairs(&pairs)
    );
    let cookie = ctx.cookie(LOGIN_COOKIE, &binding, records::STATE_TTL_MS / 1000);
    redirect(&location, vec![cookie])
}

fn login_callback(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Outcome {
    let Some(state) = urlencoded::param(inc.query, "state") else {
        return expired();
    };
    // Without this browser's sealed sign-in the callback is someone else's (login CSRF).
    let Some(binding) = form::cookie(inc.cookies, &ctx.cookie_name(LOGIN_COOKIE)) else {
        return other_browser();
    };
    let Some(login) = ctx.open::<Login>(Purpose::Login, &binding) else {
        return other_browser();
    };
    if login.tenant != ctx.tenant.id || !sealed::is_digest_of(&state, &binding) {
        return other_browser();
    }
    if login.expires_ms <= ctx.now_ms {
        return expired();
    }
    if urlencoded::param(inc.query, "error").is_some() {
        return Outcome::Reply(pages::failed(
            403,
            "Sign-in was not completed",
            "The identity provider did not sign you in. Open the link again to retry.",
        ));
    }
    let Some(code) = urlencoded::param(inc.query, "code").filter(|c| !c.is_empty()) else {
        return expired();
    };
    let redirect_uri = ctx.url("/login/callback");
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", &redirect_uri),
        ("code_verifier", &login.verifier),
    ];
    let mut request = match &ctx.connect.provider {
        ConnectProvider::Auth0 { .. } => {
            pairs.push(("client_id", &ctx.connect.client_id));
            pairs.push(("client_secret", ctx.connect.client_secret.expose()));
            ctx.call("POST", "/oauth/token", None)
        }
        ConnectProvider::Okta { token_path, .. } => {
            let mut request = ctx.call("POST", token_path, None);
            request
                .headers
                .push(("authorization", okta::basic_auth(ctx.connect)));
            request
        }
    };
    request.headers.push((
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    ));
    request.body = Some(urlencoded::encode_pairs(&pairs).into_bytes());
    call(request, Pending::Login(login))
}

fn consent_callback(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Outcome {
    let state = urlencoded::param(inc.query, "state");
    let code = urlencoded::param(inc.query, "connect_code");
    let error = urlencoded::param(inc.query, "error");
    if state.is_none() && code.is_none() && error.is_none() {
        return Outcome::Reply(pages::fragment_reader());
    }
    // The consent in flight is sealed in this browser's cookie, `state` its binding: a
    // callback without both is someone else's. Auth0 takes a `connect_code` once, so a replay
    // of this callback, on any replica, is refused there.
    let Some(state) = state else {
        return expired();
    };
    let Some(consent) = form::cookie(inc.cookies, &ctx.cookie_name(CONSENT_COOKIE))
        .and_then(|c| ctx.open::<Consent>(Purpose::Consent, &c))
    else {
        return other_browser();
    };
    if consent.expires_ms <= ctx.now_ms {
        return expired();
    }
    let Some(s) = session(ctx, inc) else {
        return other_browser();
    };
    if consent.tenant != ctx.tenant.id
        || consent.session_id != s.id
        || !sealed::same(consent.state.as_bytes(), state.as_bytes())
    {
        return other_browser();
    }
    if error.is_some() {
        ctx.count(Counter::ConnectDeclined);
        return Outcome::Reply(pages::failed(
            403,
            "The account was not connected",
            "Access was not granted at the provider. Open the link again to retry.",
        ));
    }
    let Some(code) = code.filter(|c| !c.is_empty() && c.len() <= MAX_CONNECT_CODE) else {
        return expired();
    };
    let body = json!({
        "auth_session": consent.auth_session,
        "connect_code": code,
        "redirect_uri": consent.redirect_uri,
        "code_verifier": consent.verifier,
    });
    let request = ctx.call_json(&format!("{CONNECTED_ACCOUNTS}/complete"), &s.token, &body);
    call(request, Pending::Complete(consent))
}

fn delete(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Outcome {
    let Some(s) = session(ctx, inc) else {
        return Outcome::Reply(pages::failed(
            401,
            "You are not signed in",
            "Open the connected accounts page again to sign in.",
        ));
    };
    // The form's fields travel in the action URL: a filter that paused on the request headers
    // never sees the body (Envoy holds it until the filter resumes).
    let csrf = urlencoded::param(inc.query, "csrf");
    if csrf.as_deref() != Some(s.csrf.as_str()) {
        return other_browser();
    }
    let id = urlencoded::param(inc.query, "id").filter(|id| {
        !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    let Some(id) = id else {
        return Outcome::Reply(pages::failed(
            400,
            "No such account",
            "The account to disconnect was not named correctly.",
        ));
    };
    let path = format!("{CONNECTED_ACCOUNTS}/accounts/{id}");
    call(
        ctx.call("DELETE", &path, Some(&s.token)),
        Pending::Delete(s),
    )
}

/// A JSON object from a successful call-out answer.
fn answer(response: &CalloutResponse, ok: &[u16]) -> Option<Value> {
    if !ok.contains(&response.status?) {
        return None;
    }
    let body = response.body.as_deref().filter(|b| !b.is_empty());
    match body {
        Some(b) => serde_json::from_slice::<Value>(b)
            .ok()
            .filter(Value::is_object),
        None => Some(json!({})),
    }
}

fn text(v: &Value, field: &str, max: usize) -> Option<String> {
    v[field]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control))
        .map(str::to_string)
}

/// `expires_in` of an answer in milliseconds, never longer than `cap_ms`.
fn lifetime_ms(v: &Value, cap_ms: u64) -> u64 {
    v["expires_in"]
        .as_u64()
        .map_or(cap_ms, |s| s.saturating_mul(1000).min(cap_ms))
}

/// One page of the accounts list: `take` at its maximum, from the cursor `from`.
pub fn accounts_path(connection: &str, from: Option<&str>) -> String {
    let mut path = format!(
        "{CONNECTED_ACCOUNTS}/accounts?connection={}&take={ACCOUNTS_PAGE_SIZE}",
        urlencoded::encode(connection)
    );
    if let Some(cursor) = from {
        path.push_str("&from=");
        path.push_str(&urlencoded::encode(cursor));
    }
    path
}

/// A page of `GET /accounts`: this connection's accounts, and the `next` cursor when more
/// remain. `None` when the answer is not a list (fail closed: no page claims "none").
pub fn accounts_page(v: &Value, connection: &str) -> Option<(Vec<Account>, Option<String>)> {
    let list = v["accounts"].as_array()?;
    let accounts = list
        .iter()
        .filter(|a| a["connection"].as_str() == Some(connection))
        .filter_map(|a| {
            Some((
                text(a, "id", 128)?,
                text(a, "created_at", 64).unwrap_or_default(),
            ))
        })
        .collect();
    // Absent (or empty) at the end; anything else must be a sane cursor.
    let next = match &v["next"] {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        _ => Some(text(v, "next", 1024)?),
    };
    Some((accounts, next))
}

/// A verified sign-in: the session, sealed in the browser's cookie, and on to where the
/// sign-in was for.
fn signed_in(ctx: &Ctx<'_>, login: Login, sub: String, token: String, lifetime_ms: u64) -> Outcome {
    let (Some(id), Some(csrf)) = (random_token(), random_token()) else {
        return no_randomness();
    };
    let session = Session {
        id,
        tenant: ctx.tenant.id.clone(),
        sub,
        token,
        csrf,
        expires_ms: ctx.now_ms.saturating_add(lifetime_ms),
    };
    let Some(sealed) = ctx.seal(Purpose::Session, &session) else {
        return no_randomness();
    };
    let next = match login.then {
        AfterLogin::Connect { link: Some(id) } => {
            ctx.url(&format!("/start?id={}", urlencoded::encode(&id)))
        }
        AfterLogin::Connect { link: None } | AfterLogin::Accounts => ctx.url("/accounts"),
    };
    let cookies = vec![
        ctx.cookie(SESSION_COOKIE, &sealed, lifetime_ms / 1000),
        ctx.cookie(LOGIN_COOKIE, "", 0),
    ];
    redirect(&next, cookies)
}

/// Checks a sign-in's ID token for the connect client and returns its `sub`: with `None`
/// against the tenant's issuer keys (Auth0), with `Some(jwks)` against the Okta org's keys.
pub type VerifyIdToken<'a> = dyn FnMut(&str, Option<&[u8]>) -> Option<String> + 'a;

/// Continue after a call-out answered.
pub fn resume(
    ctx: &Ctx<'_>,
    pending: Pending,
    response: &CalloutResponse,
    verify_id_token: &mut VerifyIdToken<'_>,
) -> Outcome {
    match pending {
        Pending::Login(login) => {
            let Some(v) = answer(response, &[200]) else {
                return upstream_failed("sign you in");
            };
            let (Some(token), Some(id_token)) = (
                text(&v, "access_token", 16 * 1024),
                text(&v, "id_token", 16 * 1024),
            ) else {
                return upstream_failed("sign you in");
            };
            let lifetime_ms = lifetime_ms(&v, records::SESSION_TTL_MS);
            match &ctx.connect.provider {
                ConnectProvider::Auth0 { .. } => match verify_id_token(&id_token, None) {
                    Some(sub) => signed_in(ctx, login, sub, token, lifetime_ms),
                    None => upstream_failed("confirm who you are"),
                },
                // The org's keys, fetched per sign-in (sign-ins are rare): the tenant's
                // issuer keys are the agents' authorization server's, not the org's.
                ConnectProvider::Okta { keys_path, .. } => {
                    let request = ctx.call("GET", keys_path, None);
                    let pending = Pending::OktaKeys {
                        login,
                        id_token,
                        lifetime_ms,
                    };
                    call(request, pending)
                }
            }
        }
        Pending::OktaKeys {
            login,
            id_token,
            lifetime_ms,
        } => {
            let jwks = response
                .body
                .as_deref()
                .filter(|_| response.status == Some(200));
            match jwks.and_then(|keys| verify_id_token(&id_token, Some(keys))) {
                // Okta's access token is not kept: the consent needs no API call of ours.
                Some(sub) => signed_in(ctx, login, sub, String::new(), lifetime_ms),
                None => upstream_failed("confirm who you are"),
            }
        }
        Pending::Connect {
            session_id,
            link,
            downstream_key,
            state,
            verifier,
            redirect_uri,
        } => {
            let Some(v) = answer(response, &[200, 201]) else {
                return upstream_failed("start connecting your account");
            };
            let auth_session = text(&v, "auth_session", 64);
            let ticket = text(&v["connect_params"], "ticket", 4096);
            // Only ever send the browser to the tenant's own Auth0: no open redirect.
            let connect_uri = text(&v, "connect_uri", 2048)
                .filter(|u| u.starts_with(&format!("{}/", ctx.connect.login_url)));
            let (Some(auth_session), Some(ticket), Some(connect_uri)) =
                (auth_session, ticket, connect_uri)
            else {
                return upstream_failed("start connecting your account");
            };
            let ttl_ms = lifetime_ms(&v, records::STATE_TTL_MS);
            let consent = Consent {
                tenant: ctx.tenant.id.clone(),
                session_id,
                state,
                auth_session,
                verifier,
                redirect_uri,
                connection: ctx.tenant.vault.connection.clone(),
                link,
                downstream_key,
                expires_ms: ctx.now_ms.saturating_add(ttl_ms),
            };
            let Some(sealed) = ctx.seal(Purpose::Consent, &consent) else {
                return no_randomness();
            };
            let separator = if connect_uri.contains('?') { '&' } else { '?' };
            let location = format!(
                "{connect_uri}{separator}ticket={}",
                urlencoded::encode(&ticket)
            );
            redirect(
                &location,
                vec![ctx.cookie(CONSENT_COOKIE, &sealed, ttl_ms / 1000)],
            )
        }
        Pending::Complete(consent) => {
            if answer(response, &[200, 201]).is_none() {
                ctx.count(Counter::ConnectFailed);
                return Outcome::Reply(pages::failed(
                    400,
                    "The account was not connected",
                    "The identity provider did not accept the connection. Open the link again \
                     to retry.",
                ));
            }
            // The user's cached "not connected" must not outlive the connection (on this
            // replica; the others' lasts `not_connected_cache_seconds` at most).
            crate::flow::evict_downstream(ctx.host, &consent.downstream_key);
            ctx.count(Counter::ConnectCompleted);
            let mut page = pages::connected(&ctx.tenant.name, &consent.connection);
            page.headers
                .push(("set-cookie", ctx.cookie(CONSENT_COOKIE, "", 0)));
            Outcome::Reply(page)
        }
        Pending::List {
            session,
            mut accounts,
            pages,
        } => {
            let connection = &ctx.tenant.vault.connection;
            let page = answer(response, &[200]).and_then(|v| accounts_page(&v, connection));
            let Some((rows, next)) = page else {
                return upstream_failed("list your connected accounts");
            };
            accounts.extend(rows);
            // The list is paginated (`next` until absent); a list that never ends is refused.
            if let Some(cursor) = next {
                if pages >= MAX_ACCOUNT_PAGES {
                    ctx.count(Counter::ConnectAccountsTooManyPages);
                    return upstream_failed("list your connected accounts");
                }
                let path = accounts_path(connection, Some(&cursor));
                let request = ctx.call("GET", &path, Some(&session.token));
                let pending = Pending::List {
                    session,
                    accounts,
                    pages: pages + 1,
                };
                return call(request, pending);
            }
            Outcome::Reply(pages::accounts(
                &ctx.tenant.name,
                connection,
                &accounts,
                &ctx.url("/accounts/delete"),
                &ctx.url(&format!(
                    "/start?csrf={}",
                    urlencoded::encode(&session.csrf)
                )),
                &session.csrf,
            ))
        }
        Pending::Delete(session) => {
            if answer(response, &[200, 204]).is_none() {
                return upstream_failed("disconnect the account");
            }
            // The next agent request must find out at the vault, not from our cache: every
            // entry of the user (one per login hint), and none an exchange in flight stores.
            let user = cache::user_key_for(ctx.tenant, &ctx.tenant.issuer, &session.sub);
            crate::flow::evict_user(ctx.host, &user, ctx.host.now_ms());
            ctx.count(Counter::ConnectDisconnected);
            let mut reply = match redirect(&ctx.url("/accounts"), Vec::new()) {
                Outcome::Reply(r) => r,
                Outcome::Call(..) => return upstream_failed("disconnect the account"),
            };
            // After a POST, 303 makes the browser GET the list.
            reply.status = 303;
            Outcome::Reply(reply)
        }
    }
}

#[cfg(test)]
mod tests;
