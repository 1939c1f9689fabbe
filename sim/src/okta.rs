//! Okta for the filter's two Okta vault backends (protocol reference §3.1): the org
//! authorization server's token exchange (`POST /okta/oauth2/v1/token`) for Resource server
//! (STS) tokens and for ID-JAGs, the consent page an STS `interaction_uri` leads to, and the
//! resource's authorization server (`POST /resource-as/oauth2/v1/token`) that redeems an
//! ID-JAG. Every token call authenticates with an RFC 7523 client assertion, checked in full
//! (signature, kid, iss/sub, aud, exp, iat, single-use jti).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::http::{Request, Response};
use crate::keys::{claims_of, header_of, random_id, ClientKey, IssuerKeys};
use crate::web::{consent_page, escape, html, oauth_error, parse_form};
use crate::{issue_token, lock, now, subject_claims, SimTenant, State, ACCESS_TOKEN_TYPE};

/// What an authorization server demands of a client assertion.
#[derive(Clone, Copy)]
struct AssertionRules<'a> {
    /// The `aud` it must carry.
    aud: &'a str,
    /// Auth0: RS256, RS384 or PS256 only, and a lifetime of about a minute.
    auth0: bool,
}

pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const STS_TOKEN_TYPE: &str = "urn:okta:params:oauth:token-type:oauth-sts";
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// JOSE `typ` of an ID-JAG.
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// Clock skew allowed on client assertions.
const SKEW_S: u64 = 30;
const ID_JAG_TTL_S: u64 = 300;
/// Longest client assertion Auth0 takes here: its docs recommend at most one minute.
const MAX_AUTH0_ASSERTION_S: u64 = 60;
/// Okta: `exp` at most one hour after `iat`.
const MAX_OKTA_ASSERTION_S: u64 = 3600;
const SESSION_TTL_S: u64 = 600;

/// A tenant's Okta vault, as the filter's configuration declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaVault {
    /// The org authorization server's token URL: the `aud` of the agent's client assertions.
    pub token_url: String,
    /// The agent's client id at Okta.
    pub client_id: String,
    /// The `kid` the agent's client assertions carry.
    pub key_id: String,
    /// The public half of the agent's key (from `private_key_env`).
    pub public_key: ClientKey,
    pub grant: OktaGrant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OktaGrant {
    /// `type: "okta-sts"`: a Resource server (STS) connection.
    Sts {
        resource: String,
        /// The full URN the agent must send as `subject_token_type`.
        subject_token_type: String,
    },
    /// `type: "id-jag"`: an ID-JAG from Okta, redeemed at the resource's authorization server
    /// by `resource_client_id` (registered there with the agent's key, or a secret at Auth0).
    IdJag {
        /// The resource authorization server's issuer.
        audience: String,
        scopes: Vec<String>,
        /// The RFC 8707 resource (an Auth0 API identifier), when configured.
        resource: Option<String>,
        resource_token_url: String,
        resource_client_id: String,
        /// The resource AS is Auth0's `/oauth/token` (else an Okta custom AS).
        auth0: bool,
        /// The resource client's secret at Auth0, when it authenticates with one.
        resource_client_secret: Option<String>,
        /// The full URN the agent must send as `subject_token_type`.
        subject_token_type: String,
    },
}

impl OktaGrant {
    /// The `requested_token_type` that asks for this grant.
    fn token_type(&self) -> &'static str {
        match self {
            OktaGrant::Sts { .. } => STS_TOKEN_TYPE,
            OktaGrant::IdJag { .. } => ID_JAG_TOKEN_TYPE,
        }
    }

    /// The form field naming the target, and its configured value.
    fn target(&self) -> (&'static str, &str) {
        match self {
            OktaGrant::Sts { resource, .. } => ("resource", resource),
            OktaGrant::IdJag { audience, .. } => ("audience", audience),
        }
    }

    fn subject_token_type(&self) -> &str {
        match self {
            OktaGrant::Sts {
                subject_token_type, ..
            }
            | OktaGrant::IdJag {
                subject_token_type, ..
            } => subject_token_type,
        }
    }
}

impl OktaVault {
    /// Read an `okta-sts` or `id-jag` vault section. `env` resolves `private_key_env`.
    pub fn from_config(
        vault: &Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<OktaVault, String> {
        let kind = vault["type"].as_str().unwrap_or_default();
        let text = |k: &str| {
            vault[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{kind} vault without {k}"))
        };
        let key_env = text("private_key_env")?;
        let pem =
            env(&key_env).ok_or_else(|| format!("environment variable {key_env} is not set"))?;
        let public_key =
            ClientKey::from_private_pem(&pem).map_err(|e| format!("{key_env}: {e}"))?;
        // Okta: "user access" takes an ID token, "machine access" an access token.
        let subject_token_type = match vault["subject_token_type"].as_str() {
            None | Some("access_token") => ACCESS_TOKEN_TYPE.to_string(),
            Some("id_token") => ID_TOKEN_TYPE.to_string(),
            Some(other) => return Err(format!("unknown subject_token_type '{other}'")),
        };
        let grant = match kind {
            "okta-sts" => OktaGrant::Sts {
                resource: text("resource")?,
                subject_token_type,
            },
            "id-jag" => OktaGrant::IdJag {
                audience: text("audience")?,
                scopes: vault["scopes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                resource: vault["resource"].as_str().map(str::to_string),
                resource_token_url: text("resource_token_url")?,
                resource_client_id: text("resource_client_id")?,
                auth0: vault["resource_as"] == "auth0",
                resource_client_secret: match (
                    vault["resource_client_secret"].as_str(),
                    vault["resource_client_secret_env"].as_str(),
                ) {
                    (Some(v), _) => Some(v.to_string()),
                    (None, Some(name)) => Some(
                        env(name)
                            .ok_or_else(|| format!("environment variable {name} is not set"))?,
                    ),
                    (None, None) => None,
                },
                subject_token_type,
            },
            other => return Err(format!("'{other}' is not an Okta vault type")),
        };
        Ok(OktaVault {
            token_url: text("token_url")?,
            client_id: text("client_id")?,
            key_id: text("key_id")?,
            public_key,
            grant,
        })
    }
}

/// Okta's side of the sim state.
#[derive(Default)]
pub(crate) struct Okta {
    /// Signs ID-JAGs; made only when a tenant has an Okta vault (RSA keys are slow to make).
    pub(crate) keys: Option<IssuerKeys>,
    /// Client assertion and ID-JAG jtis seen, with their expiry: each is single-use.
    seen: HashMap<String, u64>,
    sessions: HashMap<String, Session>,
    /// Form bodies the two token endpoints received.
    pub(crate) requests: Vec<HashMap<String, String>>,
}

/// A pending STS consent (`interaction_uri`).
struct Session {
    tenant: String,
    sub: String,
    connection: String,
    expires: u64,
}

impl Okta {
    pub(crate) fn new(tenants: &[SimTenant]) -> Result<Okta, String> {
        let keys = tenants
            .iter()
            .any(|t| t.okta.is_some())
            .then(|| IssuerKeys::try_generate("okta"))
            .transpose()?;
        Ok(Okta {
            keys,
            ..Okta::default()
        })
    }

    /// Record a jti; false if it was seen before. Expired entries are forgotten: a replay of
    /// one fails its `exp` check anyway.
    fn first_use(&mut self, key: String, exp: u64) -> bool {
        let now = now();
        self.seen.retain(|_, e| *e + SKEW_S > now);
        self.seen.insert(key, exp).is_none()
    }
}

type Form = HashMap<String, String>;

fn field<'f>(f: &'f Form, k: &str) -> &'f str {
    f.get(k).map(String::as_str).unwrap_or_default()
}

/// `POST /okta/oauth2/v1/token`: token exchange for an STS token or an ID-JAG.
pub(crate) fn token(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    read_grant(state, r, TOKEN_EXCHANGE_GRANT)
        .map_or_else(|e| e, |f| exchange(&mut lock(state), &f, r))
}

fn exchange(st: &mut State, f: &Form, r: &Request) -> Response {
    let client = client_of(f);
    let requested = field(f, "requested_token_type");
    let subject_iss = claims_of(field(f, "subject_token")).map(|c| c["iss"].clone());
    // Tenants may share the agent client: the one whose grant, issuer and target fit wins.
    let picked = pick(&st.tenants, |t, v| {
        let (name, target) = v.grant.target();
        (v.client_id == client).then_some(
            4 * u8::from(v.grant.token_type() == requested)
                + 2 * u8::from(subject_iss.as_ref() == Some(&json!(t.issuer)))
                + u8::from(field(f, name) == target),
        )
    });
    let Some((tenant, vault)) = picked else {
        return oauth_error(401, "invalid_client", "Client authentication failed");
    };
    let rules = AssertionRules {
        aud: &vault.token_url,
        auth0: false,
    };
    if let Err(resp) = authenticate(&mut st.okta, f, &vault.client_id, &vault, rules) {
        return resp;
    }
    if vault.grant.token_type() != requested {
        return oauth_error(
            400,
            "invalid_request",
            "requested_token_type is not supported for this client",
        );
    }
    let (name, target) = vault.grant.target();
    if field(f, name) != target {
        return oauth_error(
            400,
            "invalid_target",
            &format!("The {name} is not configured for this client"),
        );
    }
    // Okta "AI agent token exchange": user access takes an ID token minted for the agent's own
    // client, machine access an access token whose `aud` is the agent's resource URL; the type
    // must be the one the connection is set up for.
    // https://developer.okta.com/docs/guides/ai-agent-token-exchange/resourceserver/main/
    let wanted_type = vault.grant.subject_token_type();
    if field(f, "subject_token_type") != wanted_type {
        return oauth_error(400, "invalid_request", "subject_token_type is invalid");
    }
    let wanted_aud = if wanted_type == ID_TOKEN_TYPE {
        vault.client_id.as_str()
    } else {
        tenant.audience.as_str()
    };
    let Some(sub) = subject_claims(st, &tenant, field(f, "subject_token"), wanted_aud)
        .and_then(|c| c["sub"].as_str().map(str::to_string))
    else {
        return oauth_error(400, "invalid_grant", "The subject token is invalid");
    };
    let host = r.header("host").unwrap_or("127.0.0.1");
    match &vault.grant {
        OktaGrant::Sts { .. } => sts(st, &tenant, &sub, host),
        OktaGrant::IdJag {
            audience,
            resource_client_id,
            ..
        } => id_jag(st, &sub, host, audience, resource_client_id, f),
    }
}

/// The STS answer: the stored token if the user consented, else `interaction_required`.
fn sts(st: &mut State, tenant: &SimTenant, sub: &str, host: &str) -> Response {
    if st.is_connected(sub, &tenant.connection) {
        let token = issue_token(st, "sts", &tenant.connection, sub);
        return Response::json(
            200,
            &json!({
                "access_token": token,
                "issued_token_type": STS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": st.token_lifetime,
                "scope": "read",
            }),
        );
    }
    let session = random_id();
    let now = now();
    st.okta.sessions.retain(|_, s| s.expires > now);
    st.okta.sessions.insert(
        session.clone(),
        Session {
            tenant: tenant.id.clone(),
            sub: sub.to_string(),
            connection: tenant.connection.clone(),
            expires: now + SESSION_TTL_S,
        },
    );
    let body = json!({
        "error": "interaction_required",
        "error_description": "The user must authenticate with the authorization server for the request to proceed",
        "interaction_uri": format!("http://{host}/okta/interact?session={session}"),
    });
    Response::Full {
        status: 400,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// Leg 1 of ID-JAG: an identity assertion for the resource authorization server.
fn id_jag(
    st: &mut State,
    sub: &str,
    host: &str,
    audience: &str,
    resource_client_id: &str,
    f: &Form,
) -> Response {
    let Some(keys) = st.okta.keys.as_ref() else {
        return oauth_error(500, "server_error", "no signing key");
    };
    let now = now();
    let mut claims = json!({
        "iss": format!("http://{host}/okta"), "sub": sub, "aud": audience,
        // The client the resource authorization server will see redeem it.
        "client_id": resource_client_id,
        "jti": random_id(), "iat": now, "exp": now + ID_JAG_TTL_S,
    });
    let scope = field(f, "scope");
    if !scope.is_empty() {
        claims["scope"] = json!(scope);
    }
    // draft-ietf-oauth-identity-assertion-authz-grant §4.3: the requested resource becomes the
    // ID-JAG's `resource` claim.
    let resource = field(f, "resource");
    if !resource.is_empty() {
        claims["resource"] = json!(resource);
    }
    let header =
        json!({"alg": "RS256", "typ": ID_JAG_TYP, "kid": keys.kid_for("RS256", "current")});
    let Ok(assertion) = keys.sign("RS256", "current", &header, &claims) else {
        return oauth_error(500, "server_error", "signing failed");
    };
    st.minted.push(assertion.clone());
    Response::json(
        200,
        &json!({
            "token_type": "N_A",
            "expires_in": ID_JAG_TTL_S,
            "access_token": assertion,
            "issued_token_type": ID_JAG_TOKEN_TYPE,
        }),
    )
}

/// `POST /resource-as/oauth2/v1/token`: leg 2 of ID-JAG, the JWT bearer grant.
pub(crate) fn resource_token(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    read_grant(state, r, JWT_BEARER_GRANT)
        .map_or_else(|e| e, |f| redeem(&mut lock(state), &f, false))
}

/// Redeem an ID-JAG at the resource AS: an Okta custom AS, or Auth0 (`auth0`).
fn redeem(st: &mut State, f: &Form, auth0: bool) -> Response {
    let client = client_of(f);
    let assertion = field(f, "assertion");
    let Some((tenant, vault)) = resource_client(st, &client, assertion, auth0) else {
        return oauth_error(401, "invalid_client", "Client authentication failed");
    };
    let OktaGrant::IdJag {
        audience,
        resource_token_url,
        resource_client_id,
        resource_client_secret,
        ..
    } = &vault.grant
    else {
        return oauth_error(401, "invalid_client", "Client authentication failed");
    };
    if auth0 && f.contains_key("client_secret") {
        if resource_client_secret.as_deref() != Some(field(f, "client_secret"))
            || field(f, "client_id") != resource_client_id
        {
            return oauth_error(401, "invalid_client", "Client authentication failed");
        }
    } else {
        // Okta: `aud` = the token endpoint it is posted to
        // (https://developer.okta.com/docs/guides/ai-agent-token-exchange/authserver/main/).
        // Auth0 Private Key JWT: `aud` = `https://{domain}/`, RS256/RS384/PS256, single use
        // (https://auth0.com/docs/get-started/authentication-and-authorization-flow/authenticate-with-private-key-jwt).
        let rules = AssertionRules {
            aud: if auth0 { audience } else { resource_token_url },
            auth0,
        };
        if let Err(resp) = authenticate(&mut st.okta, f, resource_client_id, &vault, rules) {
            return resp;
        }
    }
    // Auth0 honours `resource` only for an existing API identifier; an unknown one is refused
    // as an unknown audience is ("Service not found").
    let resource = field(f, "resource");
    let known = st.tenants.iter().any(|t| {
        matches!(&t.okta, Some(OktaVault { grant: OktaGrant::IdJag { resource: Some(r), auth0: true, .. }, .. }) if r == resource)
    });
    if auth0 && !resource.is_empty() && !known {
        return oauth_error(403, "access_denied", "Service not found");
    }
    grant_access(st, &tenant, assertion, audience, resource_client_id)
}

/// `POST /oauth/token` with the JWT bearer grant: Auth0 as the resource authorization server
/// of Cross App Access. The client authenticates with its secret or a client assertion, and a
/// `resource` must name a known API.
/// https://auth0.com/docs/api/authentication/cross-app-access/get-token
pub(crate) fn auth0_resource_token(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    read_grant(state, r, JWT_BEARER_GRANT)
        .map_or_else(|e| e, |f| redeem(&mut lock(state), &f, true))
}

/// Whether a form-encoded `/oauth/token` call is the JWT bearer grant (else Auth0's login).
pub(crate) fn is_jwt_bearer(r: &Request) -> bool {
    parse_form(&String::from_utf8_lossy(&r.body))
        .get("grant_type")
        .is_some_and(|g| g == JWT_BEARER_GRANT)
}

/// The tenant whose resource client `client` redeems an ID-JAG at this kind of resource AS.
fn resource_client(
    st: &State,
    client: &str,
    assertion: &str,
    auth0: bool,
) -> Option<(SimTenant, OktaVault)> {
    let claims = claims_of(assertion).unwrap_or_default();
    pick(&st.tenants, |_, v| match &v.grant {
        OktaGrant::IdJag {
            audience,
            resource_client_id,
            auth0: at_auth0,
            ..
        } if *resource_client_id == client && *at_auth0 == auth0 => {
            Some(u8::from(claims["aud"] == json!(audience)))
        }
        _ => None,
    })
}

/// Check the ID-JAG (Okta's signature, `typ`, `aud`, `client_id`, expiry, single-use `jti`)
/// and issue the access token.
fn grant_access(
    st: &mut State,
    tenant: &SimTenant,
    assertion: &str,
    audience: &str,
    resource_client_id: &str,
) -> Response {
    let claims = claims_of(assertion).unwrap_or_default();
    let signed = st.okta.keys.as_ref().is_some_and(|k| k.verifies(assertion))
        && header_of(assertion).is_some_and(|h| h["typ"] == ID_JAG_TYP);
    let exp = claims["exp"].as_u64().unwrap_or(0);
    let valid = signed
        && claims["aud"] == json!(audience)
        && claims["client_id"] == json!(resource_client_id)
        && exp > now()
        && claims["jti"].as_str().is_some_and(|jti| {
            !jti.is_empty() && st.okta.first_use(format!("id-jag\u{0}{jti}"), exp)
        });
    if !valid {
        return oauth_error(400, "invalid_grant", "Assertion is invalid or has expired");
    }
    let scope = claims["scope"].as_str().unwrap_or_default();
    if scope.split(' ').any(|s| s.contains("admin")) {
        return oauth_error(403, "access_denied", "scope not allowed");
    }
    let sub = claims["sub"].as_str().unwrap_or_default();
    let token = issue_token(st, "xaa", &tenant.connection, sub);
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": st.token_lifetime,
    });
    if !scope.is_empty() {
        body["scope"] = json!(scope);
    }
    Response::json(200, &body)
}

/// The Okta tenant whose vault scores best (`None`: not a candidate); the first wins a tie.
fn pick(
    tenants: &[SimTenant],
    score: impl Fn(&SimTenant, &OktaVault) -> Option<u8>,
) -> Option<(SimTenant, OktaVault)> {
    let mut best: Option<(u8, &SimTenant, &OktaVault)> = None;
    for t in tenants {
        let Some(v) = &t.okta else { continue };
        if let Some(s) = score(t, v) {
            if best.as_ref().is_none_or(|b| s > b.0) {
                best = Some((s, t, v));
            }
        }
    }
    best.map(|(_, t, v)| (t.clone(), v.clone()))
}

/// The calling client: the form's `client_id`, else the client assertion's `iss`.
fn client_of(f: &Form) -> String {
    f.get("client_id").cloned().unwrap_or_else(|| {
        claims_of(field(f, "client_assertion"))
            .and_then(|c| c["iss"].as_str().map(str::to_string))
            .unwrap_or_default()
    })
}

/// RFC 7523 client authentication of `client_id` with `vault`'s key, by `rules`.
fn authenticate(
    okta: &mut Okta,
    f: &Form,
    client_id: &str,
    vault: &OktaVault,
    rules: AssertionRules<'_>,
) -> Result<(), Response> {
    let fail = |why: &str| Err(oauth_error(401, "invalid_client", why));
    if field(f, "client_assertion_type") != CLIENT_ASSERTION_TYPE {
        return fail("client_assertion_type must be jwt-bearer");
    }
    if f.get("client_id").is_some_and(|c| c != client_id) {
        return fail("client_id does not match the client assertion");
    }
    let assertion = field(f, "client_assertion");
    let header = header_of(assertion).unwrap_or_default();
    if header["kid"] != json!(vault.key_id) {
        return fail("The client assertion's kid is not registered for this client");
    }
    if rules.auth0 && !["RS256", "RS384", "PS256"].contains(&header["alg"].as_str().unwrap_or("")) {
        return fail("The client assertion must be signed with RS256, RS384 or PS256");
    }
    if !vault.public_key.verifies(assertion) {
        return fail("The client assertion signature is invalid");
    }
    let c = claims_of(assertion).unwrap_or_default();
    if c["iss"] != json!(client_id) || c["sub"] != json!(client_id) {
        return fail("The client assertion's iss and sub must be the client_id");
    }
    if c["aud"] != json!(rules.aud) {
        return fail(if rules.auth0 {
            "The client assertion's aud must be the tenant's issuer https://{domain}/"
        } else {
            "The client assertion's aud must be the token endpoint URL"
        });
    }
    let now = now();
    let (Some(exp), Some(iat)) = (c["exp"].as_u64(), c["iat"].as_u64()) else {
        return fail("The client assertion needs exp and iat");
    };
    if exp + SKEW_S <= now {
        return fail("The client assertion has expired");
    }
    if iat > now + SKEW_S {
        return fail("The client assertion's iat is in the future");
    }
    // Auth0 recommends at most a minute for this single-use token
    // (https://auth0.com/docs/get-started/authentication-and-authorization-flow/authenticate-with-private-key-jwt).
    // Okta's cap of an hour after `iat` is from its client-authentication docs as remembered,
    // not re-read: UNCONFIRMED, so only absurd lifetimes are refused there.
    let too_long = if rules.auth0 {
        exp > now + MAX_AUTH0_ASSERTION_S + SKEW_S
    } else {
        exp > iat + MAX_OKTA_ASSERTION_S
    };
    if too_long {
        return fail("The client assertion's lifetime is too long");
    }
    let Some(jti) = c["jti"].as_str().filter(|j| !j.is_empty()) else {
        return fail("The client assertion needs a jti");
    };
    if !okta.first_use(format!("assertion\u{0}{client_id}\u{0}{jti}"), exp) {
        return fail("The client assertion's jti was already used");
    }
    Ok(())
}

/// Parse a form-encoded token request, record it for the tests, and check its grant type.
fn read_grant(state: &Arc<Mutex<State>>, r: &Request, grant: &str) -> Result<Form, Response> {
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return Err(oauth_error(
            400,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let f = parse_form(&String::from_utf8_lossy(&r.body));
    lock(state).okta.requests.push(f.clone());
    if field(&f, "grant_type") != grant {
        return Err(oauth_error(
            400,
            "unsupported_grant_type",
            "grant type not supported",
        ));
    }
    Ok(f)
}

/// `GET /okta/interact?session=` (the consent page) and `POST /okta/interact/approve`.
pub(crate) fn interact(state: &Arc<Mutex<State>>, r: &Request) -> Response {
    let mut st = lock(state);
    if r.method == "GET" {
        let id = parse_form(&r.query).remove("session").unwrap_or_default();
        let Some(s) = st.okta.sessions.get(&id).filter(|s| s.expires > now()) else {
            return html(400, "<h1>Invalid or expired session</h1>");
        };
        let heading = format!(
            "<h1>Allow {t} to use your {c} account ({u})?</h1>",
            t = escape(&s.tenant),
            c = escape(&s.connection),
            u = escape(&s.sub),
        );
        return consent_page(
            &heading,
            "/okta/interact/approve",
            ("session", &id),
            st.accounts.auto_consent,
        );
    }
    let f = parse_form(&String::from_utf8_lossy(&r.body));
    let Some(s) = st
        .okta
        .sessions
        .remove(field(&f, "session"))
        .filter(|s| s.expires > now())
    else {
        return html(400, "<h1>Invalid or expired session</h1>");
    };
    if f.get("decision").is_some_and(|d| d != "allow") {
        return html(200, "<h1>Not connected</h1>");
    }
    st.connected.entry(s.sub).or_default().insert(s.connection);
    html(200, "<h1>Connected. You can return to your agent.</h1>")
}
