//! Plugin configuration: a strict serde schema, validated once into an immutable [`Config`].
//!
//! A configuration that does not load gets every problem reported, each one line naming the
//! tenant and the field (its JSON path), because those lines are all an operator sees in
//! Envoy's log when the plugin refuses to start, and `tvp validate` prints the same list.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::crypto::signing::SigningKey;
use crate::jose::Alg;
pub use crate::jwt::ScopeClaim;
use crate::secret::Secret;

mod connect;
mod errors;
mod hosts;
mod resource;
mod schema;
mod sealing;
mod vault;
use errors::Found;
pub use errors::{ConfigError, ConfigErrors};
pub use hosts::Hosts;
use schema::{present, Shape};
pub use sealing::SealingKeys;
use vault::{resolve_secret, validate_vault};

/// Path segments the filter answers itself; a tenant may not shadow them.
pub const RESERVED_TENANT_IDS: &[&str] = &["health", "tenants", ".well-known", "connect"];

// ---------------------------------------------------------------------------------------------
// Raw schema: exactly what the JSON may contain. Every field is optional to serde (a required
// one is `present`: absent is reported by the validators, `null` by serde), so that one missing
// field does not hide the problems of the others; sections are kept raw and checked on their
// own, so that a problem in one does not hide those of the next.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    #[serde(deserialize_with = "present")]
    settings: Option<Box<RawValue>>,
    #[serde(deserialize_with = "present")]
    tenants: Option<Vec<Box<RawValue>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    clock_skew_seconds: u64,
    jwks_refresh_seconds: u64,
    jwks_min_refetch_seconds: u64,
    jwks_max_stale_seconds: u64,
    downstream_expiry_margin_seconds: u64,
    downstream_cache_max_seconds: u64,
    not_connected_cache_seconds: u64,
    vault_backoff_seconds: u64,
    verified_token_cache_size: usize,
    signature_failures_per_second: u64,
    max_token_bytes: usize,
    callout_timeout_ms: u64,
    max_callout_response_bytes: usize,
    public_base_url: Option<String>,
    resource_from_request: bool,
    mcp_hold_path: Option<String>,
    sealing_key_env: Option<String>,
    hosts: Option<Vec<String>>,
    strip_headers: Vec<String>,
    allow_insecure_connect_cookies: bool,
}

impl Default for RawSettings {
    fn default() -> Self {
        let s = Settings::default();
        RawSettings {
            clock_skew_seconds: s.clock_skew_seconds,
            jwks_refresh_seconds: s.jwks_refresh_seconds,
            jwks_min_refetch_seconds: s.jwks_min_refetch_seconds,
            jwks_max_stale_seconds: s.jwks_max_stale_seconds,
            downstream_expiry_margin_seconds: s.downstream_expiry_margin_seconds,
            downstream_cache_max_seconds: s.downstream_cache_max_seconds,
            not_connected_cache_seconds: s.not_connected_cache_seconds,
            vault_backoff_seconds: s.vault_backoff_seconds,
            verified_token_cache_size: s.verified_token_cache_size,
            signature_failures_per_second: s.signature_failures_per_second,
            max_token_bytes: s.max_token_bytes,
            callout_timeout_ms: s.callout_timeout_ms,
            max_callout_response_bytes: s.max_callout_response_bytes,
            public_base_url: None,
            resource_from_request: false,
            mcp_hold_path: None,
            sealing_key_env: None,
            hosts: None,
            strip_headers: Vec::new(),
            allow_insecure_connect_cookies: false,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawTenant {
    #[serde(deserialize_with = "present")]
    id: Option<String>,
    #[serde(deserialize_with = "present")]
    name: Option<String>,
    #[serde(deserialize_with = "present")]
    issuer: Option<String>,
    audience: Option<String>,
    resources: Vec<String>,
    #[serde(deserialize_with = "present")]
    jwks: Option<Box<RawValue>>,
    #[serde(deserialize_with = "present")]
    algorithms: Option<Vec<String>>,
    #[serde(deserialize_with = "present")]
    scopes: Option<Box<RawValue>>,
    #[serde(deserialize_with = "present")]
    backend: Option<String>,
    #[serde(deserialize_with = "present")]
    vault: Option<Box<RawValue>>,
    downstream: Option<Box<RawValue>>,
    connect: Option<Box<RawValue>>,
    token_typ: Option<String>,
}

/// The Connected Accounts flow the filter runs for users without an account.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConnect {
    #[serde(deserialize_with = "present")]
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    login_url: Option<String>,
    scopes: Vec<String>,
    id_token_algorithms: Option<Vec<String>>,
    user_claim: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawJwks {
    #[serde(deserialize_with = "present")]
    cluster: Option<String>,
    /// Either the JWKS URL, or absent to use OIDC discovery from the issuer.
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawScopes {
    #[serde(deserialize_with = "present")]
    read: Option<Vec<String>>,
    #[serde(deserialize_with = "present")]
    write: Option<Vec<String>>,
    write_implies_read: bool,
    read_methods: Option<Vec<String>>,
    claims: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawDownstream {
    header: Option<String>,
    format: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validated configuration.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub clock_skew_seconds: u64,
    /// How long fetched keys are fresh; refreshed in the background before this.
    pub jwks_refresh_seconds: u64,
    /// Lower bound between two fetches of one tenant's JWKS (unknown-`kid` refetch).
    pub jwks_min_refetch_seconds: u64,
    /// How long keys may still be used after their refresh failed.
    pub jwks_max_stale_seconds: u64,
    pub downstream_expiry_margin_seconds: u64,
    /// Longest a downstream token is cached, whatever its lifetime: how long another replica
    /// may still forward with it after the user disconnected on one.
    pub downstream_cache_max_seconds: u64,
    pub not_connected_cache_seconds: u64,
    /// Failed vault answers are remembered per user this long, a 429 without `Retry-After`
    /// stops the tenant's vault calls this long, and a backend 401 evicts a key at most once
    /// in this interval.
    pub vault_backoff_seconds: u64,
    pub verified_token_cache_size: usize,
    /// Per tenant and worker: signature failures allowed per second (and in a burst). Once
    /// spent, tokens that would need a signature check are refused (503, `Retry-After`) until
    /// it refills; tokens already verified keep working.
    pub signature_failures_per_second: u64,
    pub max_token_bytes: usize,
    pub callout_timeout_ms: u64,
    pub max_callout_response_bytes: usize,
    /// Public URL clients use to reach this gateway (no trailing slash): the base of every
    /// protected resource and metadata URL.
    pub public_base_url: Option<String>,
    /// Without `public_base_url`, derive it from the request's scheme and `:authority`.
    pub resource_from_request: bool,
    /// Path of an Envoy route that holds a request until its body is in and never forwards it
    /// (a buffer filter after this one, a direct response). MCP requests refused for a missing
    /// account are sent there so the filter can read their JSON-RPC id. `None`: MCP clients get
    /// the plain HTTP answer.
    pub mcp_hold_path: Option<String>,
    /// Keys sealing what clients carry for the connect flow (from `sealing_key_env`), the same
    /// on every replica.
    pub sealing_keys: Option<SealingKeys>,
    /// The environment variable of the Wasm VM `sealing_keys` come from.
    pub sealing_key_env: Option<String>,
    /// The `:authority` values this gateway answers (`None`: any); others are refused first.
    pub hosts: Option<Hosts>,
    /// Request headers that carry a client's credential other than `Authorization`: removed
    /// before a request is forwarded or relayed. The built-in ones, then `strip_headers`.
    pub credential_headers: Vec<String>,
    /// A demo on plain http (or under a path): the connect pages' cookies are then plain
    /// cookies, which a sibling subdomain can plant (cookie tossing). Without it the connect
    /// pages need an https origin without a path, where they are `__Host-` cookies.
    pub allow_insecure_connect_cookies: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            clock_skew_seconds: 60,
            jwks_refresh_seconds: 600,
            jwks_min_refetch_seconds: 30,
            jwks_max_stale_seconds: 86_400,
            downstream_expiry_margin_seconds: 60,
            downstream_cache_max_seconds: 300,
            not_connected_cache_seconds: 5,
            vault_backoff_seconds: 5,
            verified_token_cache_size: 10_000,
            signature_failures_per_second: 50,
            max_token_bytes: 8 * 1024,
            callout_timeout_ms: 5_000,
            max_callout_response_bytes: 1024 * 1024,
            public_base_url: None,
            resource_from_request: false,
            mcp_hold_path: None,
            sealing_keys: None,
            sealing_key_env: None,
            hosts: None,
            credential_headers: OTHER_CREDENTIAL_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            allow_insecure_connect_cookies: false,
        }
    }
}

/// Credentials a client may send the gateway in headers other than `Authorization`: never
/// passed on to a backend (or a relayed MCP request), whatever `strip_headers` says.
pub const OTHER_CREDENTIAL_HEADERS: [&str; 2] =
    ["proxy-authorization", "x-forwarded-authorization"];

/// Most names `settings.strip_headers` may list (each is one host call per request).
const MAX_STRIP_HEADERS: usize = 32;

/// Where a tenant's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetch the JWKS at this authority and path through the cluster.
    Direct {
        cluster: String,
        authority: String,
        path: String,
    },
    /// Read `jwks_uri` from `{issuer}/.well-known/openid-configuration` first.
    Discovery {
        cluster: String,
        authority: String,
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePolicy {
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub write_implies_read: bool,
    pub read_methods: Vec<String>,
    pub claims: Vec<ScopeClaim>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectTokenType {
    AccessToken,
    RefreshToken,
    /// The user's OIDC ID token for the agent's own client (Okta "user access"), from
    /// `subject_token_header`, verified like the bearer and for the same user.
    IdToken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultConfig {
    pub cluster: String,
    /// Host[:port] of the exchange (the Auth0 domain; the Okta org), its `:authority`.
    pub domain: String,
    pub client_id: String,
    /// Auth0 connection, or for Okta backends the name the user knows the resource by.
    pub connection: String,
    pub subject_token_type: SubjectTokenType,
    /// Request header carrying the subject token when it is not the bearer: the Auth0
    /// refresh token, or the user's ID token for the agent's client (Okta "user access").
    pub subject_token_header: Option<String>,
    pub login_hint_claim: Option<String>,
    pub connect_required_errors: Vec<String>,
    pub backend: VaultBackend,
}

/// Which vault brokers the downstream token, with what only that vault needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultBackend {
    /// Auth0 Token Vault: the federated-connection access-token exchange.
    Auth0 { client_secret: Secret },
    /// Okta AI agent token exchange with a Resource server (STS) connection.
    OktaSts {
        token: Endpoint,
        key: SigningKey,
        resource: String,
    },
    /// Cross App Access: an ID-JAG from the IdP, exchanged at the resource's authorization
    /// server for an access token.
    IdJag {
        token: Endpoint,
        key: SigningKey,
        audience: String,
        scopes: Vec<String>,
        /// RFC 8707 identifier of the resource (an Auth0 API identifier), sent on both legs.
        resource: Option<String>,
        resource_token: Endpoint,
        resource_client_id: String,
        resource_auth: ResourceAuth,
    },
}

/// How the filter authenticates at the resource's authorization server (the JWT bearer leg).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceAuth {
    /// `private_key_jwt` with the vault's key; `audience` is the assertion's `aud`: Okta wants
    /// the token endpoint URL, Auth0 its issuer `https://{domain}/`.
    PrivateKeyJwt { audience: String },
    /// `client_secret_post` (Auth0's Cross App Access reference documents only this).
    ClientSecret(Secret),
}

impl VaultBackend {
    /// The client-assertion key, for the Okta backends.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        match self {
            VaultBackend::Auth0 { .. } => None,
            VaultBackend::OktaSts { key, .. } | VaultBackend::IdJag { key, .. } => Some(key),
        }
    }
}

/// A token endpoint reached through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    /// The absolute URL: the `aud` of client assertions sent to it.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamConfig {
    /// Lower-case header name the downstream credential is written to.
    pub header: String,
    /// Value template; `{token}` is replaced by the downstream token.
    pub format: String,
    /// `format` split around `{token}` once at load rather than on every request.
    before_token: String,
    after_token: String,
}

impl DownstreamConfig {
    /// The header value carrying `token`.
    pub fn value(&self, token: &str) -> String {
        let mut value =
            String::with_capacity(self.before_token.len() + token.len() + self.after_token.len());
        value.push_str(&self.before_token);
        value.push_str(token);
        value.push_str(&self.after_token);
        value
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub issuer: String,
    /// Canonical URLs of the protected resource (absolute): RFC 9728 metadata is served for
    /// each, and MCP clients ask for tokens with one as RFC 8707 `resource`.
    pub resources: Vec<String>,
    /// Accepted `aud` values: the resources, then `audience`.
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    pub algorithms: Vec<Alg>,
    /// `token_typ: "at+jwt"`: only RFC 9068 access tokens are accepted, so no other JWT of
    /// the issuer (an ID token, a logout token) passes as one (RFC 8725 3.11).
    pub require_at_jwt: bool,
    pub scopes: ScopePolicy,
    pub backend: String,
    /// `host[:port]` of `backend`, for decision records.
    pub backend_authority: String,
    pub vault: VaultConfig,
    pub downstream: DownstreamConfig,
    /// Present when the filter runs the Connected Accounts flow for this tenant.
    pub connect: Option<ConnectConfig>,
    /// The clusters the tenant's call-outs go through, in the order of the file (keys, then
    /// the vault): what a deployment must connect.
    pub upstreams: Vec<Upstream>,
    /// The environment variables of the Wasm VM the tenant's secrets and keys come from.
    pub env_vars: Vec<EnvVar>,
}

/// A cluster the filter's call-outs go through and the origin they name in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The field naming the cluster, relative to the tenant (`jwks.cluster`, `vault.cluster`,
    /// `vault.resource_cluster`).
    pub field: &'static str,
    pub cluster: String,
    /// `Some(true)` for https, `Some(false)` for http, as the URL the call-outs come from says;
    /// `None` where the configuration names a host only (an Auth0 `vault.domain`).
    pub tls: Option<bool>,
    /// `host[:port]`: the `:authority` of the call-outs.
    pub authority: String,
}

/// An environment variable of the Wasm VM the configuration reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// The field naming it, relative to the tenant (`vault.client_secret_env`).
    pub field: &'static str,
    pub name: String,
}

impl Tenant {
    /// Provider scopes the downstream account must grant (`connect.scopes`; none without the
    /// connect flow).
    pub fn provider_scopes(&self) -> &[String] {
        self.connect.as_ref().map_or(&[], |c| &c.scopes)
    }
}

/// The web client the filter signs users in with before sending them to connect their
/// account: the tenant's Auth0 (then the My Account API), or the Okta org (then Okta's
/// `interaction_uri`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectConfig {
    pub client_id: String,
    pub client_secret: Secret,
    /// Browser-facing base URL of the sign-in: the Auth0 tenant's origin (`/authorize`, and
    /// where `connect_uri` must point), or the Okta org (`/oauth2/v1/authorize`).
    pub login_url: String,
    pub provider: ConnectProvider,
    /// Provider scopes asked for when connecting; empty means the connection's defaults.
    pub scopes: Vec<String>,
    /// Algorithms the sign-in's ID tokens may be signed with (not the agent tokens' list:
    /// Auth0 signs ID tokens RS256 or PS256, Okta RS256, whatever the agents use).
    pub id_token_algorithms: Vec<Alg>,
    /// Claim of the agent token naming the user; the sign-in's ID token `sub` must equal it.
    pub user_claim: String,
}

/// Where the browser signs in, and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectProvider {
    /// Auth0, then the My Account API's Connected Accounts flow.
    Auth0 {
        /// `https://{domain}/me/`: the My Account API audience.
        my_account_audience: String,
    },
    /// The Okta org authorization server (OIDC sign-in only), then Okta's `interaction_uri`.
    Okta {
        /// The org authorization server's issuer: the org's base URL.
        issuer: String,
        /// Path of its token endpoint (also the STS exchange's) and of its JWKS.
        token_path: String,
        keys_path: String,
    },
}

impl ConnectConfig {
    /// The user an agent token stands for, as the sign-in's ID token must name them.
    pub fn user_of<'c>(&self, claims: &'c crate::jwt::Claims) -> Option<&'c str> {
        if self.user_claim == "sub" {
            Some(&claims.sub)
        } else {
            claims.user.as_deref()
        }
    }

    /// The agent-token claim to keep for [`ConnectConfig::user_of`], if not `sub`.
    pub fn extra_user_claim(&self) -> Option<&str> {
        (self.user_claim != "sub").then_some(self.user_claim.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub settings: Settings,
    pub tenants: Vec<Tenant>,
}

impl Config {
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id)
    }
}

impl Config {
    /// The first tenant whose client-assertion key only the host can sign with, when the
    /// host cannot: such a configuration must not load.
    pub fn unsignable_tenant(&self, host_signs: bool) -> Option<&Tenant> {
        self.tenants.iter().find(|t| {
            !host_signs
                && t.vault
                    .backend
                    .signing_key()
                    .is_some_and(SigningKey::needs_host)
        })
    }
}

/// Parse and validate the plugin configuration. `env` resolves `client_secret_env` names.
/// Every problem is reported, in document order, not only the first.
pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let doc: Box<RawValue> = serde_json::from_slice(json).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            tenant: None,
            path: String::new(),
            message: one_line(&e.to_string()),
        }])
    })?;
    let mut found = Found::default();
    let Some((raw, shape)) = schema::object::<RawConfig>(&doc, &mut found, "") else {
        return Err(ConfigErrors(found.into_errors("", None)));
    };
    let known = validate_settings(raw.settings.as_deref(), env, &mut found);
    let list = match shape.required(&mut found, "tenants", raw.tenants) {
        Some(list) if list.is_empty() => {
            found.add("tenants", "must list at least one tenant");
            list
        }
        list => list.unwrap_or_default(),
    };
    let mut errors: Vec<ConfigError> = found.into_errors("", None);
    let mut tenants = Vec::with_capacity(list.len());
    let mut ids: Vec<Option<String>> = Vec::with_capacity(list.len());
    for (index, raw) in list.iter().enumerate() {
        let mut found = Found::default();
        let (id, tenant) = validate_tenant(raw, &known, env, &mut found);
        if let Some(id) = &id {
            if let Some(first) = ids.iter().position(|i| i.as_ref() == Some(id)) {
                found.add(
                    "id",
                    format!("duplicate tenant id (also tenants[{first}].id)"),
                );
            }
        }
        if found.is_empty() {
            tenants.extend(tenant);
        }
        errors.extend(found.into_errors(&format!("tenants[{index}]"), id.as_deref()));
        ids.push(id);
    }
    // A tenant left out is always explained by some problem (its own, or a setting's it
    // needs); fail closed should a validator forget to say.
    if errors.is_empty() && tenants.len() < list.len() {
        errors.push(ConfigError {
            tenant: None,
            path: "tenants".into(),
            message: "a tenant is not valid".into(),
        });
    }
    if errors.is_empty() {
        Ok(Config {
            settings: known.settings,
            tenants,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The settings as far as they are valid (defaults in place of the others), and which are
/// not: a tenant is not blamed for a setting's problem.
struct KnownSettings {
    settings: Settings,
    /// Names of the settings with a problem; `None`: `settings` is not even an object.
    broken: Option<Vec<String>>,
}

impl KnownSettings {
    fn ok(&self, name: &str) -> bool {
        self.broken
            .as_ref()
            .is_some_and(|b| !b.iter().any(|n| n == name))
    }
}

fn validate_settings(
    raw: Option<&RawValue>,
    env: &dyn Fn(&str) -> Option<String>,
    found: &mut Found,
) -> KnownSettings {
    let (raw, shape) = match raw {
        None => (RawSettings::default(), Shape::clean_at("settings")),
        Some(raw) => match schema::object::<RawSettings>(raw, found, "settings") {
            Some(checked) => checked,
            None => {
                return KnownSettings {
                    settings: Settings::default(),
                    broken: None,
                }
            }
        },
    };
    let mut broken: Vec<String> = shape.failed().to_vec();
    // (field below `settings`, message)
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut bad = |field: &str, message: &str| problems.push((field.into(), message.into()));
    for (field, v) in [
        ("jwks_refresh_seconds", raw.jwks_refresh_seconds),
        ("jwks_min_refetch_seconds", raw.jwks_min_refetch_seconds),
        ("callout_timeout_ms", raw.callout_timeout_ms),
        (
            "downstream_cache_max_seconds",
            raw.downstream_cache_max_seconds,
        ),
    ] {
        if v == 0 {
            bad(field, "must be greater than 0");
        }
    }
    if raw.clock_skew_seconds > 600 {
        bad("clock_skew_seconds", "must be at most 600");
    }
    if !(1024..=65_536).contains(&raw.max_token_bytes) {
        bad("max_token_bytes", "must be between 1024 and 65536");
    }
    if raw.vault_backoff_seconds > 300 {
        bad("vault_backoff_seconds", "must be at most 300");
    }
    if !(1..=100_000).contains(&raw.signature_failures_per_second) {
        bad(
            "signature_failures_per_second",
            "must be between 1 and 100000",
        );
    }
    if raw.callout_timeout_ms > 60_000 {
        bad("callout_timeout_ms", "must be at most 60000");
    }
    if raw.max_callout_response_bytes < 1024 {
        bad("max_callout_response_bytes", "must be at least 1024");
    }
    let public_base_url = match raw.public_base_url {
        None => None,
        Some(u) => match Url::parse(&u) {
            Err(m) => {
                bad("public_base_url", m);
                None
            }
            Ok(url) if url.path_and_query.contains('?') => {
                bad("public_base_url", "must not have a query");
                None
            }
            Ok(_) => Some(u.trim_end_matches('/').to_string()),
        },
    };
    if let Some(path) = &raw.mcp_hold_path {
        // A leading "/." cannot be a tenant (ids are [A-Za-z0-9_-]), so no tenant's traffic
        // can be held by mistake.
        let ok = path.starts_with("/.")
            && !path.starts_with("/.well-known")
            && path.len() <= 128
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
        if !ok {
            bad(
                "mcp_hold_path",
                "must be a path starting with \"/.\" (not /.well-known) of [A-Za-z0-9/._-]",
            );
        }
    }
    let sealing_keys = match &raw.sealing_key_env {
        None => None,
        Some(name) => match env(name) {
            None => {
                bad(
                    "sealing_key_env",
                    &format!(
                        "environment variable '{}' is not set in Envoy's environment (the wasm filter also needs it in vm_config.environment_variables)",
                        printable(name)
                    ),
                );
                None
            }
            Some(text) => match SealingKeys::parse(&text) {
                Ok(keys) => Some(keys),
                Err(m) => {
                    bad("sealing_key_env", &format!("'{}' {m}", printable(name)));
                    None
                }
            },
        },
    };
    let hosts = match &raw.hosts {
        None => None,
        Some(list) => match Hosts::parse(list) {
            Ok(hosts) => Some(hosts),
            Err(m) => {
                bad("hosts", &m);
                None
            }
        },
    };
    let credential_headers = credential_headers(&raw.strip_headers).unwrap_or_else(|bad_ones| {
        for (i, m) in bad_ones {
            bad(&format!("strip_headers[{i}]"), m);
        }
        Settings::default().credential_headers
    });
    for (field, message) in problems {
        found.add(&format!("settings.{field}"), message);
        let name = field.split(['[', '.']).next().unwrap_or_default();
        broken.push(name.to_string());
    }
    KnownSettings {
        settings: Settings {
            credential_headers,
            allow_insecure_connect_cookies: raw.allow_insecure_connect_cookies,
            hosts,
            sealing_keys,
            sealing_key_env: raw.sealing_key_env,
            mcp_hold_path: raw.mcp_hold_path,
            public_base_url,
            resource_from_request: raw.resource_from_request,
            clock_skew_seconds: raw.clock_skew_seconds,
            jwks_refresh_seconds: raw.jwks_refresh_seconds,
            jwks_min_refetch_seconds: raw.jwks_min_refetch_seconds,
            jwks_max_stale_seconds: raw.jwks_max_stale_seconds,
            downstream_expiry_margin_seconds: raw.downstream_expiry_margin_seconds,
            downstream_cache_max_seconds: raw.downstream_cache_max_seconds,
            not_connected_cache_seconds: raw.not_connected_cache_seconds,
            vault_backoff_seconds: raw.vault_backoff_seconds,
            verified_token_cache_size: raw.verified_token_cache_size,
            signature_failures_per_second: raw.signature_failures_per_second,
            max_token_bytes: raw.max_token_bytes,
            callout_timeout_ms: raw.callout_timeout_ms,
            max_callout_response_bytes: raw.max_callout_response_bytes,
        },
        broken: Some(broken),
    }
}

/// One tenant: its id (if it has one, for naming it and finding duplicates) and, when nothing
/// is wrong with it, the validated tenant. Fields are checked independently where they can be,
/// a check needing another field only once that one is valid.
fn validate_tenant(
    raw: &RawValue,
    known: &KnownSettings,
    env: &dyn Fn(&str) -> Option<String>,
    found: &mut Found,
) -> (Option<String>, Option<Tenant>) {
    let Some((raw, shape)) = schema::object::<RawTenant>(raw, found, "") else {
        return (None, None);
    };
    let id = shape.required(found, "id", raw.id);
    let usable_id = id
        .as_deref()
        .filter(|id| found.check("id", check_id(id)).is_some());
    let name = shape
        .required(found, "name", raw.name)
        .filter(|n| found.check("name", require_text(n)).is_some());
    let issuer = shape.required(found, "issuer", raw.issuer);
    let issuer_url = issuer
        .as_deref()
        .and_then(|s| found.check("issuer", Url::parse(s)));
    let audience_ok = shape.ok("audience")
        && raw
            .audience
            .as_deref()
            .is_none_or(|a| found.check("audience", require_text(a)).is_some());
    let resources = match usable_id {
        Some(id) if shape.ok("resources") && known.ok("public_base_url") => resource::resolve(
            id,
            &raw.resources,
            known.settings.public_base_url.as_deref(),
            found,
        ),
        _ => None,
    };
    let audiences = resources.as_ref().filter(|_| audience_ok).and_then(|r| {
        let all = resource::audiences(r, raw.audience.as_deref());
        if all.is_empty() {
            found.add(
                "resources",
                "name the URL clients use (resources) or the token audience (audience)",
            );
            return None;
        }
        Some(all)
    });
    let jwks = shape
        .required(found, "jwks", raw.jwks)
        .and_then(|j| validate_jwks(&j, issuer_url.as_ref(), found));
    let algorithms = shape
        .required(found, "algorithms", raw.algorithms)
        .and_then(|names| validate_algorithms(&names, found));
    let require_at_jwt = match raw.token_typ.as_deref() {
        None => Some(false),
        Some("at+jwt") => Some(true),
        Some(_) => {
            found.add(
                "token_typ",
                "must be \"at+jwt\" (RFC 9068 access tokens) or left out",
            );
            None
        }
    };
    let scopes = shape
        .required(found, "scopes", raw.scopes)
        .and_then(|s| validate_scopes(&s, found));
    let backend = shape.required(found, "backend", raw.backend);
    let backend_url = backend
        .as_deref()
        .and_then(|b| found.check("backend", Url::parse(b)));
    let vault = shape
        .required(found, "vault", raw.vault)
        .and_then(|v| validate_vault(&v, env, found));

    if let (Some(vault), Some(algorithms)) = (&vault, &algorithms) {
        let exchanges_the_bearer = matches!(vault.config.backend, VaultBackend::Auth0 { .. })
            && vault.config.subject_token_type == SubjectTokenType::AccessToken;
        if exchanges_the_bearer
            && !algorithms
                .iter()
                .any(|a| matches!(a, Alg::Rs256 | Alg::Ps256))
        {
            // The Token Vault takes Auth0's own access tokens, and Auth0 signs them with RS256
            // or PS256 (HS256 is never accepted here): Auth0, "Signing Algorithms".
            found.add(
                "algorithms",
                "an auth0 tenant exchanging the agent's token must allow RS256 or PS256 (Auth0 \
                 signs access tokens with those); agent tokens of another issuer need \
                 vault.subject_token_type \"refresh_token\"",
            );
        }
    }
    if let (Some(vault), Some(audiences)) = (&vault, &audiences) {
        if matches!(vault.config.backend, VaultBackend::Auth0 { .. }) && audiences.len() > 1 {
            // Token Vault exchanges only subject tokens for the API its Custom API Client is
            // linked to, and a client is linked to one API (Auth0, "Configure Token Vault").
            found.add(
                "audience",
                "an Auth0 Custom API Client is linked to one API: name its identifier once, in \
                 resources (the URL MCP clients use) or in audience",
            );
        }
    }
    let downstream = match raw.downstream {
        Some(d) => validate_downstream(Some(&d), found),
        None if shape.ok("downstream") => validate_downstream(None, found),
        None => None,
    };
    if let Some(d) = &downstream {
        let subject_header = vault
            .as_ref()
            .and_then(|v| v.config.subject_token_header.as_deref());
        if subject_header == Some(d.header.as_str())
            || d.header == "host"
            || d.header.starts_with(':')
        {
            found.add(
                "downstream.header",
                "cannot be a pseudo-header, host or the subject token header",
            );
        }
    }

    let connect_given = raw.connect.is_some() || !shape.ok("connect");
    let connect = raw
        .connect
        .as_deref()
        .and_then(|c| connect::validate_connect(c, vault.as_ref().map(|v| &v.config), env, found));
    if connect_given {
        connect_needs(known, found);
    }

    let tenant = (|| {
        let jwks = jwks?;
        let vault = vault?;
        let mut upstreams = vec![jwks.1];
        upstreams.extend(vault.upstreams);
        let mut env_vars = vault.env_vars;
        let connect = match connect {
            Some((config, env)) => {
                env_vars.extend(env);
                Some(config)
            }
            None if connect_given => return None,
            None => None,
        };
        Some(Tenant {
            id: usable_id?.to_string(),
            name: name?,
            issuer: issuer.filter(|_| issuer_url.is_some())?,
            resources: resources?,
            audiences: audiences?,
            jwks: jwks.0,
            algorithms: algorithms?,
            require_at_jwt: require_at_jwt?,
            scopes: scopes?,
            backend_authority: backend_url?.authority,
            backend: backend?,
            vault: vault.config,
            downstream: downstream?,
            connect,
            upstreams,
            env_vars,
        })
    })();
    (id, tenant.filter(|_| found.is_empty()))
}

/// What the connect pages need of the settings.
fn connect_needs(known: &KnownSettings, found: &mut Found) {
    let settings = &known.settings;
    if known.ok("sealing_key_env") && settings.sealing_keys.is_none() {
        // Links, sign-ins and sessions travel sealed, so that any replica, restarted or not,
        // can take the next step: with a key every replica shares.
        found.add(
            "connect",
            "needs settings.sealing_key_env (a key every replica shares)",
        );
    }
    if known.ok("public_base_url")
        && known.ok("resource_from_request")
        && settings.public_base_url.is_none()
        && !settings.resource_from_request
    {
        // The flow's redirect URIs are absolute: the gateway must know its public URL.
        found.add(
            "connect",
            "needs settings.public_base_url (or settings.resource_from_request)",
        );
    }
    if let (Some(base), false, true) = (
        &settings.public_base_url,
        settings.allow_insecure_connect_cookies,
        known.ok("allow_insecure_connect_cookies"),
    ) {
        if !host_cookie_origin(base) {
            // Only `__Host-` cookies (Secure, `Path=/`, no `Domain`) cannot be planted by a
            // sibling subdomain or a plain-http page: a planted session would connect the
            // victim's provider account to the attacker's user.
            found.add(
                "connect",
                format!(
                    "needs settings.public_base_url to be an https origin without a path \
                     ('{}' is not), so that the connect pages' cookies are __Host- cookies \
                     no sibling subdomain can plant (for a local demo only, set \
                     settings.allow_insecure_connect_cookies)",
                    printable(base)
                ),
            );
        }
    }
}

fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("must be 1-64 characters of [A-Za-z0-9_-] (it is a URL path segment)");
    }
    if RESERVED_TENANT_IDS.contains(&id) {
        return Err("is reserved for an endpoint of the filter");
    }
    Ok(())
}

/// Where the keys come from, and the cluster they are fetched through.
fn validate_jwks(
    raw: &RawValue,
    issuer: Option<&Url>,
    found: &mut Found,
) -> Option<(JwksSource, Upstream)> {
    let (raw, shape) = schema::object::<RawJwks>(raw, found, "jwks")?;
    if !shape.clean() {
        return None;
    }
    let cluster = shape
        .required(found, "cluster", raw.cluster)
        .and_then(|c| found.check("jwks.cluster", cluster_name(&c)));
    let (url, discovery) = match &raw.url {
        Some(u) => (found.check("jwks.url", Url::parse(u))?, false),
        // Without an issuer URL there is nothing to discover from (its problem is reported).
        None => (issuer?.clone(), true),
    };
    let cluster = cluster?;
    let upstream = Upstream {
        field: "jwks.cluster",
        cluster: cluster.clone(),
        tls: Some(url.scheme == "https"),
        authority: url.authority.clone(),
    };
    let source = if discovery {
        let mut path = url.path_and_query;
        if !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(".well-known/openid-configuration");
        JwksSource::Discovery {
            cluster,
            authority: url.authority,
            path,
        }
    } else {
        JwksSource::Direct {
            cluster,
            authority: url.authority,
            path: url.path_and_query,
        }
    };
    Some((source, upstream))
}

fn validate_algorithms(names: &[String], found: &mut Found) -> Option<Vec<Alg>> {
    if names.is_empty() {
        found.add("algorithms", "must list at least one algorithm");
        return None;
    }
    let mut algorithms = Vec::new();
    let mut all_known = true;
    for name in names {
        match Alg::from_name(name) {
            Some(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
            Some(_) => {}
            None => {
                all_known = false;
                found.add(
                    "algorithms",
                    format!(
                        "'{}' is not supported (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, EdDSA)",
                        printable(name)
                    ),
                );
            }
        }
    }
    all_known.then_some(algorithms)
}

fn validate_scopes(raw: &RawValue, found: &mut Found) -> Option<ScopePolicy> {
    let (raw, shape) = schema::object::<RawScopes>(raw, found, "scopes")?;
    if !shape.clean() {
        return None;
    }
    let before = found.len();
    let mut check = |field: &str, list: Option<Vec<String>>| {
        let list = shape.required(found, field, list)?;
        let path = format!("scopes.{field}");
        if list.is_empty() {
            found.add(&path, "must list at least one scope");
        }
        for s in &list {
            if s.is_empty() || !s.bytes().all(is_scope_char) {
                found.add(
                    &path,
                    format!("'{}' is not a valid scope token", printable(s)),
                );
            }
        }
        Some(list)
    };
    let read = check("read", raw.read);
    let write = check("write", raw.write);
    let read_methods = match raw.read_methods {
        None => vec!["GET".into(), "HEAD".into(), "OPTIONS".into()],
        Some(list) => {
            if list.is_empty() {
                found.add("scopes.read_methods", "must not be empty");
            }
            for m in &list {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    found.add(
                        "scopes.read_methods",
                        format!("'{}' is not an upper-case HTTP method", printable(m)),
                    );
                }
            }
            list
        }
    };
    let claims = match raw.claims {
        None => vec![ScopeClaim::Scope, ScopeClaim::Scp, ScopeClaim::Permissions],
        Some(list) => {
            if list.is_empty() {
                found.add("scopes.claims", "must not be empty");
            }
            let mut out = Vec::new();
            for c in &list {
                match c.as_str() {
                    "scope" => out.push(ScopeClaim::Scope),
                    "scp" => out.push(ScopeClaim::Scp),
                    "permissions" => out.push(ScopeClaim::Permissions),
                    other => found.add(
                        "scopes.claims",
                        format!(
                            "'{}' is not one of scope, scp, permissions",
                            printable(other)
                        ),
                    ),
                }
            }
            out
        }
    };
    if found.len() > before {
        return None;
    }
    Some(ScopePolicy {
        read: read?,
        write: write?,
        write_implies_read: raw.write_implies_read,
        read_methods,
        claims,
    })
}

fn validate_downstream(raw: Option<&RawValue>, found: &mut Found) -> Option<DownstreamConfig> {
    let raw = match raw {
        None => RawDownstream::default(),
        Some(raw) => {
            let (raw, shape) = schema::object::<RawDownstream>(raw, found, "downstream")?;
            if !shape.clean() {
                return None;
            }
            raw
        }
    };
    let header = found.check(
        "downstream.header",
        header_name(raw.header.as_deref().unwrap_or("authorization")),
    );
    let format = raw.format.unwrap_or_else(|| "Bearer {token}".into());
    let (Some((before, after)), 1) = (
        format.split_once("{token}"),
        format.matches("{token}").count(),
    ) else {
        found.add("downstream.format", "must contain {token} exactly once");
        return None;
    };
    if format.bytes().any(|b| b.is_ascii_control()) {
        found.add("downstream.format", "must not contain control characters");
        return None;
    }
    Some(DownstreamConfig {
        header: header?,
        before_token: before.to_string(),
        after_token: after.to_string(),
        format,
    })
}

// ---------------------------------------------------------------------------------------------
// Small syntax checks.

fn require_text(s: &str) -> Result<(), &'static str> {
    if s.trim().is_empty() {
        Err("must not be empty")
    } else if s.chars().any(char::is_control) {
        Err("must not contain control characters")
    } else {
        Ok(())
    }
}

fn cluster_name(s: &str) -> Result<String, &'static str> {
    if s.is_empty() || s.len() > 255 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Err("must be an Envoy cluster name")
    } else {
        Ok(s.to_string())
    }
}

/// The built-in credential headers and the configured extra ones (lower-cased, each once), or
/// every bad entry by its index.
fn credential_headers(extra: &[String]) -> Result<Vec<String>, Vec<(usize, &'static str)>> {
    if extra.len() > MAX_STRIP_HEADERS {
        return Err(vec![(MAX_STRIP_HEADERS, "at most 32 header names")]);
    }
    let mut out: Vec<String> = OTHER_CREDENTIAL_HEADERS
        .iter()
        .map(|h| h.to_string())
        .collect();
    let mut bad = Vec::new();
    for (i, name) in extra.iter().enumerate() {
        let name = match header_name(name) {
            Ok(name) => name,
            Err(m) => {
                bad.push((i, m));
                continue;
            }
        };
        // Removing `host` would misroute; the filter reads the agent's `authorization` itself
        // and removes it whenever the downstream credential goes elsewhere.
        if name == "host" || name == "authorization" {
            bad.push((i, "cannot be host or authorization"));
        } else if !out.contains(&name) {
            out.push(name);
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad)
    }
}

fn header_name(s: &str) -> Result<String, &'static str> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        Err("must be an HTTP header name")
    } else {
        Ok(s.to_ascii_lowercase())
    }
}

/// RFC 6749 scope-token characters: printable ASCII except space, `"` and `\`.
fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

fn is_authority(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    host_ok && port_ok
}

/// A parser message (which may quote the offending input) as one log-safe line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Echo user input into an error line without letting it forge log lines.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The parts of an absolute http(s) URL the filter needs to address a call through a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub authority: String,
    pub path_and_query: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, &'static str> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or("must be an absolute http(s) URL")?;
        if scheme != "https" && scheme != "http" {
            return Err("must be an absolute http(s) URL");
        }
        if s.bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'#')
        {
            return Err("must not contain spaces, control characters or a fragment");
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') || !is_authority(authority) {
            return Err("must have a host (and optional port) and no user info");
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Url {
            scheme: scheme.to_string(),
            authority: authority.to_string(),
            path_and_query: path,
        })
    }
}

/// Whether the connect pages at `base` (a public URL without a trailing slash) use `__Host-`
/// cookies: an https origin without a path (such a cookie must be `Path=/`).
pub fn host_cookie_origin(base: &str) -> bool {
    base.strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

/// Public, secret-free view of a tenant for `/tenants` and `/{tenant}/info`.
pub fn public_view(t: &Tenant) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "name": t.name,
        "issuer": t.issuer,
        "resources": t.resources,
        "audiences": t.audiences,
        "algorithms": t.algorithms.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "scopes": {
            "read": t.scopes.read,
            "write": t.scopes.write,
            "write_implies_read": t.scopes.write_implies_read,
            "read_methods": t.scopes.read_methods,
        },
        "connection": t.vault.connection,
        "backend": t.backend,
    })
}

/// Environment lookup used in production: the Wasm VM's WASI environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests;
