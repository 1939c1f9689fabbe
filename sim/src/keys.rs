//! Signing keys of a simulated issuer, their JWKS, and raw JWS signing; the agents' own key
//! pairs (PKCS#8 PEM) and the RFC 7523 client assertions they sign.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaPrivateKey, RsaPublicKey};
use jwt_compact::{Algorithm, AlgorithmSignature};
use rand::RngCore;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

pub struct RsaKey {
    pub kid: String,
    pub key: RsaPrivateKey,
}

/// One issuer's keys. `rsa[0]` is current; further entries are older keys still published.
pub struct IssuerKeys {
    pub rsa: Vec<RsaKey>,
    /// Keys no longer published (rotated out), kept so tests can sign with them.
    pub retired: Vec<RsaKey>,
    pub ec_kid: String,
    pub ec: p256::ecdsa::SigningKey,
    pub ed_kid: String,
    pub ed: ed25519_compact::KeyPair,
    generation: u32,
}

impl IssuerKeys {
    /// [`IssuerKeys::try_generate`] for unit tests, where no keys means no test.
    #[allow(
        clippy::panic,
        reason = "a test helper: the test cannot go on without keys"
    )]
    pub fn generate(tenant: &str) -> IssuerKeys {
        IssuerKeys::try_generate(tenant).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_generate(tenant: &str) -> Result<IssuerKeys, String> {
        Ok(IssuerKeys {
            rsa: vec![new_rsa(tenant, 1)?],
            retired: Vec::new(),
            ec_kid: format!("{tenant}-ec-1"),
            ec: p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng),
            ed_kid: format!("{tenant}-ed-1"),
            ed: ed25519_compact::KeyPair::generate(),
            generation: 1,
        })
    }

    /// Make a new RSA key current (the keys are unchanged when none could be made). The
    /// previous one stays published when `keep_old`.
    pub fn rotate(&mut self, tenant: &str, keep_old: bool) -> Result<String, String> {
        let new = new_rsa(tenant, self.generation + 1)?;
        self.generation += 1;
        let kid = new.kid.clone();
        self.rsa.insert(0, new);
        if !keep_old {
            self.retired.extend(self.rsa.drain(1..));
        }
        Ok(kid)
    }

    pub fn jwks(&self) -> Value {
        let mut keys: Vec<Value> = self
            .rsa
            .iter()
            .map(|k| {
                json!({
                    "kty": "RSA", "use": "sig", "kid": k.kid,
                    "n": b64(&k.key.n().to_bytes_be()), "e": b64(&k.key.e().to_bytes_be()),
                })
            })
            .collect();
        let point = self.ec.verifying_key().to_encoded_point(false);
        keys.push(json!({
            "kty": "EC", "use": "sig", "crv": "P-256", "kid": self.ec_kid,
            "x": b64(&point.x().map(|x| x.to_vec()).unwrap_or_default()),
            "y": b64(&point.y().map(|y| y.to_vec()).unwrap_or_default()),
        }));
        keys.push(json!({
            "kty": "OKP", "use": "sig", "crv": "Ed25519", "kid": self.ed_kid, "x": b64(self.ed.pk.as_ref()),
        }));
        json!({ "keys": keys })
    }

    /// Sign `header.claims` with the key `alg` and `key` choose. `key` may be "current",
    /// "retired" (the newest rotated-out RSA key) or a kid.
    pub fn sign(
        &self,
        alg: &str,
        key: &str,
        header: &Value,
        claims: &Value,
    ) -> Result<String, String> {
        let input = signing_input(header, claims);
        let rsa_key = || -> Result<&RsaPrivateKey, String> {
            let found = match key {
                "current" => self.rsa.first(),
                "retired" => self.retired.last(),
                kid => self.rsa.iter().chain(&self.retired).find(|k| k.kid == kid),
            };
            found
                .map(|k| &k.key)
                .ok_or_else(|| format!("no RSA key '{key}'"))
        };
        let signature: Vec<u8> = match alg {
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
                let rsa = Rsa::with_name(alg);
                rsa.sign(rsa_key()?, input.as_bytes())
                    .as_bytes()
                    .into_owned()
            }
            "ES256" => Es256
                .sign(&self.ec, input.as_bytes())
                .as_bytes()
                .into_owned(),
            "EdDSA" => Ed25519
                .sign(&self.ed.sk, input.as_bytes())
                .as_bytes()
                .into_owned(),
            other => return Err(format!("the sim cannot sign {other}")),
        };
        Ok(format!("{input}.{}", b64(&signature)))
    }

    /// The kid that `sign` uses for `alg`/`key`.
    pub fn kid_for(&self, alg: &str, key: &str) -> Option<String> {
        match alg {
            "ES256" => Some(self.ec_kid.clone()),
            "EdDSA" => Some(self.ed_kid.clone()),
            _ => match key {
                "current" => self.rsa.first().map(|k| k.kid.clone()),
                "retired" => self.retired.last().map(|k| k.kid.clone()),
                kid => Some(kid.to_string()),
            },
        }
    }

    /// Verify a token this issuer signed (the vault checks its subject token).
    pub fn verifies(&self, token: &str) -> bool {
        let Some(jws) = Jws::parse(token) else {
            return false;
        };
        let input = jws.input.as_bytes();
        let kid = jws.header["kid"].as_str().unwrap_or_default();
        match jws.header["alg"].as_str().unwrap_or_default() {
            "ES256" => jws.es256(self.ec.verifying_key()),
            "EdDSA" => <Ed25519 as Algorithm>::Signature::try_from_slice(&jws.signature)
                .is_ok_and(|s| Ed25519.verify_signature(&s, &self.ed.pk, input)),
            alg @ ("RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => self
                .rsa
                .iter()
                .filter(|k| k.kid == kid)
                .any(|k| jws.rsa(alg, &k.key.to_public_key())),
            _ => false,
        }
    }
}

/// A compact JWS taken apart for verification.
struct Jws {
    header: Value,
    /// `header.payload` as sent: what the signature covers.
    input: String,
    signature: Vec<u8>,
}

impl Jws {
    fn parse(token: &str) -> Option<Jws> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Jws {
            header: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?,
            input: format!("{header}.{payload}"),
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    fn es256(&self, key: &p256::ecdsa::VerifyingKey) -> bool {
        <Es256 as Algorithm>::Signature::try_from_slice(&self.signature)
            .is_ok_and(|s| Es256.verify_signature(&s, key, self.input.as_bytes()))
    }

    fn rsa(&self, alg: &str, key: &RsaPublicKey) -> bool {
        <Rsa as Algorithm>::Signature::try_from_slice(&self.signature)
            .is_ok_and(|s| Rsa::with_name(alg).verify_signature(&s, key, self.input.as_bytes()))
    }
}

/// The JOSE header of a compact JWS, unverified.
pub fn header_of(token: &str) -> Option<Value> {
    Jws::parse(token).map(|j| j.header)
}

/// The claims of a compact JWS, unverified.
pub fn claims_of(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// An agent's private key, as the filter reads it from `private_key_env`.
enum AgentKey {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
}

impl AgentKey {
    fn from_pem(pem: &str) -> Result<AgentKey, String> {
        if let Ok(key) = RsaPrivateKey::from_pkcs8_pem(pem) {
            // Okta refuses RSA keys under 2048 bits.
            if key.size() < 256 {
                return Err("RSA agent keys must have 2048 bits or more".into());
            }
            return Ok(AgentKey::Rsa(Box::new(key)));
        }
        p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map(AgentKey::P256)
            .map_err(|_| "not a PKCS#8 PEM RSA or P-256 private key".into())
    }

    fn public(&self) -> ClientKey {
        match self {
            AgentKey::Rsa(k) => ClientKey::Rsa(k.to_public_key()),
            AgentKey::P256(k) => ClientKey::P256(*k.verifying_key()),
        }
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = match self {
            AgentKey::Rsa(k) => Rsa::rs256()
                .sign(k, input.as_bytes())
                .as_bytes()
                .into_owned(),
            AgentKey::P256(k) => Es256.sign(k, input.as_bytes()).as_bytes().into_owned(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

/// The public half of an agent's key pair: what Okta registers to check its client assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl ClientKey {
    /// Derive the public key from a PKCS#8 PEM private key (RSA 2048+ or P-256).
    pub fn from_private_pem(pem: &str) -> Result<ClientKey, String> {
        AgentKey::from_pem(pem).map(|k| k.public())
    }

    /// The one algorithm this key signs with: RS256 or ES256.
    pub fn alg(&self) -> &'static str {
        match self {
            ClientKey::Rsa(_) => "RS256",
            ClientKey::P256(_) => "ES256",
        }
    }

    /// Whether `token` is a JWS signed by this key, with the key's algorithm in its header.
    pub fn verifies(&self, token: &str) -> bool {
        let Some(jws) = Jws::parse(token) else {
            return false;
        };
        if jws.header["alg"] != self.alg() {
            return false;
        }
        match self {
            ClientKey::Rsa(k) => jws.rsa("RS256", k),
            ClientKey::P256(k) => jws.es256(k),
        }
    }
}

/// A fresh RSA 2048 agent private key, PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----").
pub fn agent_key_pem() -> Result<String, String> {
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|e| format!("RSA key generation failed: {e}"))?;
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| format!("PKCS#8 encoding failed: {e}"))
}

/// [`agent_key_pem`] for tests (a `OnceLock` initialiser), where no key means no test.
#[allow(
    clippy::panic,
    reason = "a test helper: the test cannot go on without its key"
)]
pub fn generate_agent_key_pem() -> String {
    agent_key_pem().unwrap_or_else(|e| panic!("{e}"))
}

/// An RFC 7523 client assertion as the filter signs it: `iss` = `sub` = `client_id`, `aud` the
/// token URL, a fresh `jti`, `exp` = now + `lifetime_s`. A negative lifetime gives an expired
/// assertion (`iat` then equals `exp`, so only the expiry is wrong).
pub fn client_assertion(
    pem: &str,
    kid: &str,
    client_id: &str,
    aud: &str,
    lifetime_s: i64,
) -> Result<String, String> {
    let key = AgentKey::from_pem(pem)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let exp = now + lifetime_s;
    let header = json!({"alg": key.public().alg(), "kid": kid, "typ": "JWT"});
    let claims = json!({
        "iss": client_id, "sub": client_id, "aud": aud,
        "iat": now.min(exp), "exp": exp, "jti": random_id(),
    });
    Ok(key.sign(&header, &claims))
}

/// 24 random bytes, base64url: jti values, session ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    b64(&bytes)
}

fn new_rsa(tenant: &str, generation: u32) -> Result<RsaKey, String> {
    Ok(RsaKey {
        kid: format!("{tenant}-rsa-{generation}"),
        key: RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| format!("{tenant}: RSA key generation failed: {e}"))?,
    })
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
