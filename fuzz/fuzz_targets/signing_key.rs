//! Client-assertion keys from arbitrary bytes: the DER readers behind `SigningKey::from_pem`
//! (PKCS#8 RSA and P-256, hand-written) never panic, and a key they accept signs or says why
//! only the host can.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::crypto::signing::SigningKey;

fuzz_target!(|data: &[u8]| {
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64_encode(data)
    );
    if let Ok(key) = SigningKey::from_pem(&pem, "k") {
        assert!(key.needs_host() || key.sign_pure(b"input").is_some());
    }
    // The same bytes as the PEM text itself.
    let _ = SigningKey::from_pem(&String::from_utf8_lossy(data), "k");
});

/// Standard base64 with padding (kept here so the target needs no extra dependency).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
