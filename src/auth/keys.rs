//! Keys and the challenge-response handshake (the SCRAM construction over
//! HMAC-SHA256, without salt or iterations: secrets are 256 random bits,
//! not passwords).
//!
//! A principal's key is its id and a random 32-byte secret, kept in a key
//! file. From the secret both sides derive
//!
//! * `client_key = HMAC(secret, "kessai client key")`, known to the client
//!   only, and
//! * `stored_key = SHA-256(client_key)`, the only form the engine keeps.
//!
//! To authenticate, the client proves it knows `client_key` for a message
//! that includes a fresh nonce from each side:
//!
//! * `auth_message = "kessai-auth-v1" | principal id (u32 BE) | client nonce | server nonce`
//! * `signature = HMAC(stored_key, auth_message)`
//! * `proof = client_key XOR signature`
//!
//! The engine recomputes the signature, recovers `client_key = proof XOR
//! signature`, and accepts when `SHA-256(client_key) == stored_key`. The
//! secret never crosses the wire; a recorded handshake is useless because
//! the server's nonce differs next time; and a stolen database (stored keys
//! only) does not let anyone authenticate.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;

/// Bytes of a principal's secret: 256 bits.
pub const SECRET_BYTES: usize = 32;
/// Bytes of each side's nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a derived key, a signature and a proof (SHA-256).
pub const DIGEST_BYTES: usize = 32;

const CLIENT_KEY_LABEL: &[u8] = b"kessai client key";
const AUTH_LABEL: &[u8] = b"kessai-auth-v1";

/// What the engine keeps of a principal's secret.
pub type StoredKey = [u8; DIGEST_BYTES];

/// A principal's key: who, and the secret that proves it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub principal: u32,
    secret: [u8; SECRET_BYTES],
}

impl fmt::Debug for Key {
    /// Never shows the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(principal {})", self.principal)
    }
}

impl Key {
    /// A fresh key with a secret from the OS-seeded CSPRNG.
    pub fn generate(principal: u32) -> Key {
        let mut secret = [0u8; SECRET_BYTES];
        rand::fill(&mut secret[..]);
        Key { principal, secret }
    }

    fn client_key(&self) -> [u8; DIGEST_BYTES] {
        hmac(&self.secret, &[CLIENT_KEY_LABEL])
    }

    /// The form the engine stores.
    pub fn stored_key(&self) -> StoredKey {
        Sha256::digest(self.client_key()).into()
    }

    /// The client's proof for one handshake.
    pub fn proof(
        &self,
        client_nonce: &[u8; NONCE_BYTES],
        server_nonce: &[u8; NONCE_BYTES],
    ) -> [u8; DIGEST_BYTES] {
        let signature = signature(
            &self.stored_key(),
            self.principal,
            client_nonce,
            server_nonce,
        );
        xor(&self.client_key(), &signature)
    }

    /// The key file's text: the principal's id and its secret in hex.
    pub fn to_file_text(&self, role: &str) -> String {
        format!(
            "# kessai key of principal {} ({role}). Keep it secret: whoever holds\n\
             # this file can act as that principal.\nprincipal = {}\nsecret = \"{}\"\n",
            self.principal,
            self.principal,
            hex::encode(self.secret)
        )
    }

    pub fn from_file_text(text: &str) -> Result<Key, String> {
        let mut principal = None;
        let mut secret = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| "a key file line is `name = value`".to_string())?;
            match name.trim() {
                "principal" => {
                    principal = Some(
                        value
                            .trim()
                            .parse::<u32>()
                            .map_err(|_| "principal is not a number".to_string())?,
                    );
                }
                "secret" => {
                    let hex_text = value.trim().trim_matches('"');
                    let bytes = hex::decode(hex_text).map_err(|_| "secret is not hex")?;
                    secret = Some(
                        <[u8; SECRET_BYTES]>::try_from(bytes.as_slice())
                            .map_err(|_| format!("secret is not {SECRET_BYTES} bytes"))?,
                    );
                }
                other => return Err(format!("unknown key file field {other:?}")),
            }
        }
        Ok(Key {
            principal: principal.ok_or("the key file names no principal")?,
            secret: secret.ok_or("the key file holds no secret")?,
        })
    }

    pub fn read(path: &Path) -> Result<Key, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
        Key::from_file_text(&text).map_err(|e| format!("key {}: {e}", path.display()))
    }

    /// Writes the key file once: refuses to overwrite, readable by its
    /// owner only, synced before it is reported written.
    pub fn write_new(&self, path: &Path, role: &str) -> Result<(), String> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        file.write_all(self.to_file_text(role).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// True when `proof` shows knowledge of the key behind `stored_key` for
/// this handshake. Constant-time in the comparison that matters.
pub fn verify(
    stored_key: &StoredKey,
    principal: u32,
    client_nonce: &[u8; NONCE_BYTES],
    server_nonce: &[u8; NONCE_BYTES],
    proof: &[u8; DIGEST_BYTES],
) -> bool {
    let signature = signature(stored_key, principal, client_nonce, server_nonce);
    let client_key = xor(proof, &signature);
    let derived: [u8; DIGEST_BYTES] = Sha256::digest(client_key).into();
    derived
        .iter()
        .zip(stored_key)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

/// A fresh nonce from the OS-seeded CSPRNG.
pub fn nonce() -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::fill(&mut nonce[..]);
    nonce
}

fn signature(
    stored_key: &StoredKey,
    principal: u32,
    client_nonce: &[u8; NONCE_BYTES],
    server_nonce: &[u8; NONCE_BYTES],
) -> [u8; DIGEST_BYTES] {
    hmac(
        stored_key,
        &[
            AUTH_LABEL,
            &principal.to_be_bytes(),
            client_nonce,
            server_nonce,
        ],
    )
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_BYTES] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn xor(a: &[u8; DIGEST_BYTES], b: &[u8; DIGEST_BYTES]) -> [u8; DIGEST_BYTES] {
    let mut out = [0u8; DIGEST_BYTES];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = a[index] ^ b[index];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_only_for_its_own_handshake() {
        let key = Key::generate(5);
        let stored = key.stored_key();
        let (client, server) = (nonce(), nonce());
        let proof = key.proof(&client, &server);
        assert!(verify(&stored, 5, &client, &server, &proof));
        // Another server nonce (a replay), another principal, another key.
        assert!(!verify(&stored, 5, &client, &nonce(), &proof));
        assert!(!verify(&stored, 6, &client, &server, &proof));
        let other = Key::generate(5);
        assert!(!verify(&other.stored_key(), 5, &client, &server, &proof));
        // The stored key alone cannot make a proof: signing with it as if
        // it were the client key fails.
        let forged = xor(&stored, &signature(&stored, 5, &client, &server));
        assert!(!verify(&stored, 5, &client, &server, &forged));
    }

    #[test]
    fn key_files_round_trip_and_reject_garbage() {
        let key = Key::generate(42);
        let text = key.to_file_text("store-hq");
        assert_eq!(Key::from_file_text(&text), Ok(key.clone()));
        assert!(!format!("{key:?}").contains(&hex::encode(key.secret)));
        assert!(Key::from_file_text("principal = 1\n").is_err());
        assert!(Key::from_file_text("principal = x\nsecret = \"00\"").is_err());
        assert!(Key::from_file_text(&text.replace("principal", "prince")).is_err());
        let short = format!("principal = 1\nsecret = \"{}\"", "ab".repeat(31));
        assert!(Key::from_file_text(&short).is_err());
    }

    #[test]
    fn a_key_file_is_written_once_and_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        let key = Key::generate(7);
        key.write_new(&path, "merchant").expect("written");
        assert!(
            key.write_new(&path, "merchant").is_err(),
            "never overwritten"
        );
        assert_eq!(Key::read(&path), Ok(key));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
