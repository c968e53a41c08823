//! Secrets the state has to keep for a while: a business-process request's tokens and event
//! token until its reply is delivered, and the app's install tokens for `etl activities sync`.
//! They are stored sealed (ChaCha20-Poly1305) under a key derived from the application's client
//! secret, which every replica has and the state never holds: a dump or a backup of the
//! database shows no token. Values stored before sealing existed are read as they are.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

const PREFIX: &str = "sealed:v1:";

pub struct Sealer(LessSafeKey);

impl Sealer {
    /// The key for this client secret.
    pub fn new(client_secret: &str) -> Sealer {
        let key = Sha256::new()
            .chain_update(b"b24-etl state seal v1\0")
            .chain_update(client_secret.as_bytes())
            .finalize();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key");
        Sealer(LessSafeKey::new(key))
    }

    pub fn seal(&self, plain: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = plain.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .expect("sealing a value in memory");
        format!("{PREFIX}{}{}", hex::encode(nonce), hex::encode(sealed))
    }

    /// The value a `seal` made; a value without the mark is returned as it is.
    pub fn open(&self, text: &str) -> Result<String, String> {
        let Some(body) = text.strip_prefix(PREFIX) else {
            return Ok(text.to_string());
        };
        let refused =
            || "a sealed secret in the state does not open with this client secret".to_string();
        let bytes = hex::decode(body).map_err(|_| refused())?;
        if bytes.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| refused())?;
        String::from_utf8(plain.to_vec()).map_err(|_| refused())
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_client_secret() {
        let sealer = Sealer::new("client-secret-1");
        let sealed = sealer.seal(r#"{"access_token":"acc-1"}"#);
        assert!(is_sealed(&sealed) && !sealed.contains("acc-1"), "{sealed}");
        assert_ne!(
            sealed,
            sealer.seal(r#"{"access_token":"acc-1"}"#),
            "a fresh nonce each time"
        );
        assert_eq!(sealer.open(&sealed).unwrap(), r#"{"access_token":"acc-1"}"#);
        assert!(Sealer::new("client-secret-2").open(&sealed).is_err());
        assert!(sealer.open("sealed:v1:00").is_err());
        assert_eq!(
            sealer.open("stored before sealing").unwrap(),
            "stored before sealing"
        );
    }
}
