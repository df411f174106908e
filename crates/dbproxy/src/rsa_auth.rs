//! The RSA half of `caching_sha2_password` full authentication over plain
//! TCP, kept out of the sans-IO protocol core: the proxy's own key pair
//! (clients ask for its public key and send their password encrypted with
//! it) and the encryption of the proxy's password under a MySQL 8 server's
//! key. RSA-OAEP with SHA-1 (MGF1 SHA-1), as MySQL 8.0.5 and later and its
//! clients use it.

use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs8::{DecodePublicKey as _, EncodePublicKey as _, LineEnding};
use rsa::{Generate as _, PrivateKey, PublicKey};
use sha1_011::Sha1;

/// The proxy's key pair, made when the first client needs it (3072 bits,
/// the crate's default; MySQL makes 2048): it lives only in memory and
/// changes with every start, so there is no key file to protect or rotate.
pub(crate) struct ProxyKey {
    private: PrivateKey,
    /// The public key, PEM (SubjectPublicKeyInfo, `BEGIN PUBLIC KEY`), as
    /// MySQL sends it after `0x01`.
    pub(crate) pem: Vec<u8>,
}

impl std::fmt::Debug for ProxyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyKey").finish_non_exhaustive()
    }
}

impl ProxyKey {
    /// A new key pair (CPU-bound: run it off the reactor).
    pub(crate) fn generate() -> Result<Self, String> {
        let private = PrivateKey::generate();
        let pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?
            .into_bytes();
        Ok(Self { private, pem })
    }

    /// Decrypts a client's answer; `None` when it is not a valid
    /// ciphertext under this key.
    pub(crate) fn decrypt(&self, ciphertext: &[u8]) -> Option<Vec<u8>> {
        self.private.oaep_decrypt::<Sha1>(ciphertext).ok()
    }
}

/// Encrypts `plaintext` under a server's public key `pem` (SubjectPublicKeyInfo
/// or PKCS#1 PEM).
pub(crate) fn encrypt(pem: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the server's public key is not PEM")?;
    let text = text.trim_matches(char::from(0)).trim();
    let key = PublicKey::from_public_key_pem(text)
        .or_else(|_| PublicKey::from_pkcs1_pem(text))
        .map_err(|e| format!("the server's public key does not parse: {e}"))?;
    key.oaep_encrypt::<Sha1>(plaintext)
        .map_err(|e| format!("RSA encryption failed: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn what_encrypt_makes_under_the_pem_the_key_decrypts() {
        let k = ProxyKey::generate().unwrap();
        assert!(k.pem.starts_with(b"-----BEGIN PUBLIC KEY-----"));
        let ct = encrypt(&k.pem, b"secret\0").unwrap();
        assert_eq!(ct.len(), PrivateKey::DEFAULT_BITS / 8);
        assert_eq!(k.decrypt(&ct).unwrap(), b"secret\0");
        assert_eq!(k.decrypt(b"not a ciphertext"), None);
        assert!(encrypt(b"garbage", b"x").is_err());
    }
}
