//! Plugin configuration: a strict serde schema, validated once into an immutable [`Config`].
//!
//! Every rejection is one line naming the tenant and the field, because that line is all an
//! operator sees in Envoy's log when the plugin refuses to start.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;

use crate::crypto::signing::SigningKey;
use crate::jose::Alg;
pub use crate::jwt::ScopeClaim;
use crate::secret::Secret;

mod connect;
mod hosts;
mod resource;
mod sealing;
mod vault;
pub use hosts::Hosts;
pub use sealing::SealingKeys;
use vault::{resolve_secret, validate_vault, RawVault};

/// Path segments the filter answers itself; a tenant may not shadow them.
pub const RESERVED_TENANT_IDS: &[&str] = &["health", "tenants", ".well-known", "connect"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    fn at(tenant: Option<&str>, field: &str, message: impl fmt::Display) -> Self {
        match tenant {
            Some(id) => ConfigError(format!("tenant '{id}': field '{field}': {message}")),
            None => ConfigError(format!("field '{field}': {message}")),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid plugin configuration: {}", self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw schema: exactly what the JSON may contain.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    settings: RawSettings,
    tenants: Vec<serde_json::Value>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    id: String,
    name: String,
    issuer: String,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    jwks: RawJwks,
    algorithms: Vec<String>,
    scopes: RawScopes,
    backend: String,
    vault: RawVault,
    #[serde(default)]
    downstream: Option<RawDownstream>,
    #[serde(default)]
    connect: Option<RawConnect>,
    #[serde(default)]
    token_typ: Option<String>,
}

/// The Connected Accounts flow the filter runs for users without an account.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    login_url: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    id_token_algorithms: Option<Vec<String>>,
    #[serde(default)]
    user_claim: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    cluster: String,
    /// Either the JWKS URL, or absent to use OIDC discovery from the issuer.
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopes {
    read: Vec<String>,
    write: Vec<String>,
    #[serde(default)]
    write_implies_read: bool,
    #[serde(default)]
    read_methods: Option<Vec<String>>,
    #[serde(default)]
    claims: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownstream {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
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
            max_token_bytes: 8 * 1024,
            callout_timeout_ms: 5_000,
            max_callout_response_bytes: 1024 * 1024,
            public_base_url: None,
            resource_from_request: false,
            mcp_hold_path: None,
            sealing_keys: None,
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
pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_json::from_slice(json).map_err(|e| {
        ConfigError(format!(
            "not a valid configuration document: {}",
            one_line(&e.to_string())
        ))
    })?;
    let settings = validate_settings(raw.settings, env)?;
    if raw.tenants.is_empty() {
        return Err(ConfigError::at(
            None,
            "tenants",
            "must list at least one tenant",
        ));
    }
    let mut tenants = Vec::with_capacity(raw.tenants.len());
    let mut seen = HashSet::new();
    for (index, value) in raw.tenants.into_iter().enumerate() {
        // Name the tenant in schema errors too, so "unknown field" points somewhere useful.
        let label = value
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("#{index}"));
        let raw_tenant: RawTenant = serde_json::from_value(value).map_err(|e| {
            ConfigError(format!(
                "tenant '{}': {}",
                printable(&label),
                one_line(&e.to_string())
            ))
        })?;
        let tenant = validate_tenant(raw_tenant, &settings, env)?;
        if tenant.connect.is_some() && settings.sealing_keys.is_none() {
            // Links, sign-ins and sessions travel sealed, so that any replica, restarted or
            // not, can take the next step: with a key every replica shares.
            return Err(ConfigError::at(
                Some(&tenant.id),
                "connect",
                "needs settings.sealing_key_env (a key every replica shares)",
            ));
        }
        if tenant.connect.is_some()
            && settings.public_base_url.is_none()
            && !settings.resource_from_request
        {
            // The flow's redirect URIs are absolute: the gateway must know its public URL.
            return Err(ConfigError::at(
                Some(&tenant.id),
                "connect",
                "needs settings.public_base_url (or settings.resource_from_request)",
            ));
        }
        if let (Some(_), Some(base), false) = (
            &tenant.connect,
            &settings.public_base_url,
            settings.allow_insecure_connect_cookies,
        ) {
            if !host_cookie_origin(base) {
                // Only `__Host-` cookies (Secure, `Path=/`, no `Domain`) cannot be planted by a
                // sibling subdomain or a plain-http page: a planted session would connect the
                // victim's provider account to the attacker's user.
                return Err(ConfigError::at(
                    Some(&tenant.id),
                    "connect",
                    format!(
                        "needs settings.public_base_url to be an https origin without a path \
                         ('{}' is not), so that the connect pages' cookies are __Host- cookies \
                         no sibling subdomain can plant (for a local demo only, set \
                         settings.allow_insecure_connect_cookies)",
                        printable(base)
                    ),
                ));
            }
        }
        if !seen.insert(tenant.id.clone()) {
            return Err(ConfigError::at(
                Some(&tenant.id),
                "id",
                "duplicate tenant id",
            ));
        }
        tenants.push(tenant);
    }
    Ok(Config { settings, tenants })
}

fn validate_settings(
    raw: RawSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let positive = |field: &str, v: u64| {
        if v == 0 {
            Err(ConfigError::at(
                None,
                &format!("settings.{field}"),
                "must be greater than 0",
            ))
        } else {
            Ok(v)
        }
    };
    positive("jwks_refresh_seconds", raw.jwks_refresh_seconds)?;
    positive("jwks_min_refetch_seconds", raw.jwks_min_refetch_seconds)?;
    positive("callout_timeout_ms", raw.callout_timeout_ms)?;
    positive(
        "downstream_cache_max_seconds",
        raw.downstream_cache_max_seconds,
    )?;
    if raw.clock_skew_seconds > 600 {
        return Err(ConfigError::at(
            None,
            "settings.clock_skew_seconds",
            "must be at most 600",
        ));
    }
    if !(1024..=65_536).contains(&raw.max_token_bytes) {
        return Err(ConfigError::at(
            None,
            "settings.max_token_bytes",
            "must be between 1024 and 65536",
        ));
    }
    if raw.vault_backoff_seconds > 300 {
        return Err(ConfigError::at(
            None,
            "settings.vault_backoff_seconds",
            "must be at most 300",
        ));
    }
    if raw.callout_timeout_ms > 60_000 {
        return Err(ConfigError::at(
            None,
            "settings.callout_timeout_ms",
            "must be at most 60000",
        ));
    }
    if raw.max_callout_response_bytes < 1024 {
        return Err(ConfigError::at(
            None,
            "settings.max_callout_response_bytes",
            "must be at least 1024",
        ));
    }
    let public_base_url = match raw.public_base_url {
        None => None,
        Some(u) => {
            let url =
                Url::parse(&u).map_err(|m| ConfigError::at(None, "settings.public_base_url", m))?;
            if url.path_and_query.contains('?') {
                return Err(ConfigError::at(
                    None,
                    "settings.public_base_url",
                    "must not have a query",
                ));
            }
            Some(u.trim_end_matches('/').to_string())
        }
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
            return Err(ConfigError::at(
                None,
                "settings.mcp_hold_path",
                "must be a path starting with \"/.\" (not /.well-known) of [A-Za-z0-9/._-]",
            ));
        }
    }
    let sealing_keys = match &raw.sealing_key_env {
        None => None,
        Some(name) => {
            let field = "settings.sealing_key_env";
            let text = env(name).ok_or_else(|| {
                ConfigError::at(
                    None,
                    field,
                    format!(
                        "environment variable '{}' is not set for the Wasm VM (vm_config.environment_variables)",
                        printable(name)
                    ),
                )
            })?;
            let keys = SealingKeys::parse(&text)
                .map_err(|m| ConfigError::at(None, field, format!("'{}' {m}", printable(name))))?;
            Some(keys)
        }
    };
    let hosts = match &raw.hosts {
        None => None,
        Some(list) => {
            Some(Hosts::parse(list).map_err(|m| ConfigError::at(None, "settings.hosts", m))?)
        }
    };
    let credential_headers = credential_headers(&raw.strip_headers)
        .map_err(|(i, m)| ConfigError::at(None, &format!("settings.strip_headers[{i}]"), m))?;
    Ok(Settings {
        credential_headers,
        allow_insecure_connect_cookies: raw.allow_insecure_connect_cookies,
        hosts,
        sealing_keys,
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
        max_token_bytes: raw.max_token_bytes,
        callout_timeout_ms: raw.callout_timeout_ms,
        max_callout_response_bytes: raw.max_callout_response_bytes,
    })
}

fn validate_tenant(
    raw: RawTenant,
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Tenant, ConfigError> {
    let id = raw.id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ConfigError::at(
            Some(&id),
            "id",
            "must be 1-64 characters of [A-Za-z0-9_-] (it is a URL path segment)",
        ));
    }
    let err = |field: &str, message: &str| ConfigError::at(Some(&id), field, message);
    if RESERVED_TENANT_IDS.contains(&id.as_str()) {
        return Err(err("id", "is reserved for an endpoint of the filter"));
    }
    require_text(&raw.name).map_err(|m| err("name", m))?;
    let issuer_url = Url::parse(&raw.issuer).map_err(|m| err("issuer", m))?;
    if let Some(audience) = &raw.audience {
        require_text(audience).map_err(|m| err("audience", m))?;
    }
    let resources = resource::resolve(&id, &raw.resources, settings.public_base_url.as_deref())
        .map_err(|(field, m)| err(&field, &m))?;
    let audiences = resource::audiences(&resources, raw.audience.as_deref());
    if audiences.is_empty() {
        return Err(err(
            "resources",
            "name the URL clients use (resources) or the token audience (audience)",
        ));
    }

    let jwks = match raw.jwks.url {
        Some(url) => {
            let url = Url::parse(&url).map_err(|m| err("jwks.url", m))?;
            JwksSource::Direct {
                cluster: cluster_name(&raw.jwks.cluster).map_err(|m| err("jwks.cluster", m))?,
                authority: url.authority,
                path: url.path_and_query,
            }
        }
        None => {
            let mut path = issuer_url.path_and_query.clone();
            if !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(".well-known/openid-configuration");
            JwksSource::Discovery {
                cluster: cluster_name(&raw.jwks.cluster).map_err(|m| err("jwks.cluster", m))?,
                authority: issuer_url.authority,
                path,
            }
        }
    };

    if raw.algorithms.is_empty() {
        return Err(err("algorithms", "must list at least one algorithm"));
    }
    let mut algorithms = Vec::new();
    for name in &raw.algorithms {
        let alg = Alg::from_name(name).ok_or_else(|| {
            err(
                "algorithms",
                &format!(
                    "'{}' is not supported (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, EdDSA)",
                    printable(name)
                ),
            )
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }

    let require_at_jwt = match raw.token_typ.as_deref() {
        None => false,
        Some("at+jwt") => true,
        Some(_) => {
            return Err(err(
                "token_typ",
                "must be \"at+jwt\" (RFC 9068 access tokens) or left out",
            ))
        }
    };
    let scopes = validate_scopes(raw.scopes).map_err(|(field, m)| err(&field, &m))?;
    let backend_authority = Url::parse(&raw.backend)
        .map_err(|m| err("backend", m))?
        .authority;
    let vault = validate_vault(raw.vault, env).map_err(|(field, m)| err(&field, &m))?;
    let exchanges_the_bearer = matches!(vault.backend, VaultBackend::Auth0 { .. })
        && vault.subject_token_type == SubjectTokenType::AccessToken;
    if exchanges_the_bearer
        && !algorithms
            .iter()
            .any(|a| matches!(a, Alg::Rs256 | Alg::Ps256))
    {
        // The Token Vault takes Auth0's own access tokens, and Auth0 signs them with RS256 or
        // PS256 (HS256 is never accepted here): Auth0, "Signing Algorithms".
        return Err(err(
            "algorithms",
            "an auth0 tenant exchanging the agent's token must allow RS256 or PS256 (Auth0 \
             signs access tokens with those); agent tokens of another issuer need \
             vault.subject_token_type \"refresh_token\"",
        ));
    }
    if matches!(vault.backend, VaultBackend::Auth0 { .. }) && audiences.len() > 1 {
        // Token Vault exchanges only subject tokens for the API its Custom API Client is
        // linked to, and a client is linked to one API (Auth0, "Configure Token Vault").
        return Err(err(
            "audience",
            "an Auth0 Custom API Client is linked to one API: name its identifier once, in \
             resources (the URL MCP clients use) or in audience",
        ));
    }
    let downstream = validate_downstream(raw.downstream).map_err(|(field, m)| err(&field, &m))?;
    if vault.subject_token_header.as_deref() == Some(downstream.header.as_str())
        || downstream.header == "host"
        || downstream.header.starts_with(':')
    {
        return Err(err(
            "downstream.header",
            "cannot be a pseudo-header, host or the subject token header",
        ));
    }

    let connect = raw
        .connect
        .map(|c| connect::validate_connect(c, &vault, env))
        .transpose()
        .map_err(|(field, m)| err(&field, &m))?;

    Ok(Tenant {
        id: id.clone(),
        name: raw.name,
        issuer: raw.issuer,
        resources,
        audiences,
        jwks,
        algorithms,
        require_at_jwt,
        scopes,
        backend: raw.backend,
        backend_authority,
        vault,
        downstream,
        connect,
    })
}

type FieldError = (String, String);

fn validate_scopes(raw: RawScopes) -> Result<ScopePolicy, FieldError> {
    let check = |field: &str, list: &[String]| -> Result<(), FieldError> {
        if list.is_empty() {
            return Err((field.into(), "must list at least one scope".into()));
        }
        for s in list {
            if s.is_empty() || !s.bytes().all(is_scope_char) {
                return Err((
                    field.into(),
                    format!("'{}' is not a valid scope token", printable(s)),
                ));
            }
        }
        Ok(())
    };
    check("scopes.read", &raw.read)?;
    check("scopes.write", &raw.write)?;
    let read_methods = match raw.read_methods {
        None => vec!["GET".into(), "HEAD".into(), "OPTIONS".into()],
        Some(list) => {
            if list.is_empty() {
                return Err(("scopes.read_methods".into(), "must not be empty".into()));
            }
            for m in &list {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err((
                        "scopes.read_methods".into(),
                        format!("'{}' is not an upper-case HTTP method", printable(m)),
                    ));
                }
            }
            list
        }
    };
    let claims = match raw.claims {
        None => vec![ScopeClaim::Scope, ScopeClaim::Scp, ScopeClaim::Permissions],
        Some(list) => {
            if list.is_empty() {
                return Err(("scopes.claims".into(), "must not be empty".into()));
            }
            let mut out = Vec::new();
            for c in &list {
                out.push(match c.as_str() {
                    "scope" => ScopeClaim::Scope,
                    "scp" => ScopeClaim::Scp,
                    "permissions" => ScopeClaim::Permissions,
                    other => {
                        return Err((
                            "scopes.claims".into(),
                            format!(
                                "'{}' is not one of scope, scp, permissions",
                                printable(other)
                            ),
                        ))
                    }
                });
            }
            out
        }
    };
    Ok(ScopePolicy {
        read: raw.read,
        write: raw.write,
        write_implies_read: raw.write_implies_read,
        read_methods,
        claims,
    })
}

fn validate_downstream(raw: Option<RawDownstream>) -> Result<DownstreamConfig, FieldError> {
    let raw = raw.unwrap_or(RawDownstream {
        header: None,
        format: None,
    });
    let header = header_name(raw.header.as_deref().unwrap_or("authorization"))
        .map_err(|m| ("downstream.header".to_string(), m.to_string()))?;
    let format = raw.format.unwrap_or_else(|| "Bearer {token}".into());
    let (Some((before, after)), 1) = (
        format.split_once("{token}"),
        format.matches("{token}").count(),
    ) else {
        return Err((
            "downstream.format".into(),
            "must contain {token} exactly once".into(),
        ));
    };
    if format.bytes().any(|b| b.is_ascii_control()) {
        return Err((
            "downstream.format".into(),
            "must not contain control characters".into(),
        ));
    }
    Ok(DownstreamConfig {
        header,
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

/// The built-in credential headers and the configured extra ones (lower-cased, each once).
fn credential_headers(extra: &[String]) -> Result<Vec<String>, (usize, &'static str)> {
    if extra.len() > MAX_STRIP_HEADERS {
        return Err((MAX_STRIP_HEADERS, "at most 32 header names"));
    }
    let mut out: Vec<String> = OTHER_CREDENTIAL_HEADERS
        .iter()
        .map(|h| h.to_string())
        .collect();
    for (i, name) in extra.iter().enumerate() {
        let name = header_name(name).map_err(|m| (i, m))?;
        // Removing `host` would misroute; the filter reads the agent's `authorization` itself
        // and removes it whenever the downstream credential goes elsewhere.
        if name == "host" || name == "authorization" {
            return Err((i, "cannot be host or authorization"));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
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
