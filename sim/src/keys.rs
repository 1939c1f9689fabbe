//! Signing keys of a simulated issuer, their JWKS, and raw JWS signing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaPrivateKey};
use jwt_compact::{Algorithm, AlgorithmSignature};
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
    pub fn generate(tenant: &str) -> IssuerKeys {
        IssuerKeys {
            rsa: vec![new_rsa(tenant, 1)],
            retired: Vec::new(),
            ec_kid: format!("{tenant}-ec-1"),
            ec: p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng),
            ed_kid: format!("{tenant}-ed-1"),
            ed: ed25519_compact::KeyPair::generate(),
            generation: 1,
        }
    }

    /// Make a new RSA key current. The previous one stays published when `keep_old`.
    pub fn rotate(&mut self, tenant: &str, keep_old: bool) -> String {
        self.generation += 1;
        let new = new_rsa(tenant, self.generation);
        let kid = new.kid.clone();
        self.rsa.insert(0, new);
        if !keep_old {
            self.retired.extend(self.rsa.drain(1..));
        }
        kid
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
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
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
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return false;
        }
        let Ok(header) = URL_SAFE_NO_PAD.decode(parts[0]) else {
            return false;
        };
        let Ok(header) = serde_json::from_slice::<Value>(&header) else {
            return false;
        };
        let Ok(sig) = URL_SAFE_NO_PAD.decode(parts[2]) else {
            return false;
        };
        let input = format!("{}.{}", parts[0], parts[1]);
        let kid = header["kid"].as_str().unwrap_or_default();
        match header["alg"].as_str().unwrap_or_default() {
            "ES256" => <Es256 as Algorithm>::Signature::try_from_slice(&sig).is_ok_and(|s| {
                Es256.verify_signature(&s, self.ec.verifying_key(), input.as_bytes())
            }),
            "EdDSA" => <Ed25519 as Algorithm>::Signature::try_from_slice(&sig)
                .is_ok_and(|s| Ed25519.verify_signature(&s, &self.ed.pk, input.as_bytes())),
            alg @ ("RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => {
                self.rsa.iter().filter(|k| k.kid == kid).any(|k| {
                    let public = k.key.to_public_key();
                    <Rsa as Algorithm>::Signature::try_from_slice(&sig).is_ok_and(|s| {
                        Rsa::with_name(alg).verify_signature(&s, &public, input.as_bytes())
                    })
                })
            }
            _ => false,
        }
    }
}

fn new_rsa(tenant: &str, generation: u32) -> RsaKey {
    RsaKey {
        kid: format!("{tenant}-rsa-{generation}"),
        key: RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .unwrap_or_else(|e| panic!("RSA key generation failed: {e}")),
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
