//! Signing commands as a client does: a key, its next nonce, and the envelope to post to `/v1/commands`.

use crate::auth::{signing_bytes, to_hex, Envelope, PublicKey};
use ballast_engine::CommandKind;
use ed25519_dalek::{Signer as _, SigningKey};

/// A signing key and the nonce its next command will carry.
pub struct Signer {
    key: SigningKey,
    next_nonce: u64,
}

impl Signer {
    /// A signer from a 32-byte secret seed, starting at nonce 1.
    pub fn from_seed(seed: [u8; 32]) -> Signer {
        Signer {
            key: SigningKey::from_bytes(&seed),
            next_nonce: 1,
        }
    }

    /// A deterministic signer for tests and the demo: the seed is `label`'s SHA-256.
    pub fn for_label(label: &str) -> Signer {
        use sha2::Digest;
        Signer::from_seed(sha2::Sha256::digest(label.as_bytes()).into())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// Continues from a nonce already used (the next envelope carries `last + 1`).
    pub fn set_last_nonce(&mut self, last: u64) {
        self.next_nonce = last + 1;
    }

    /// Signs `command` with the next nonce.
    pub fn sign(&mut self, command: CommandKind) -> Envelope {
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.sign_with_nonce(command, nonce)
    }

    pub fn sign_with_nonce(&self, command: CommandKind, nonce: u64) -> Envelope {
        let signer = self.public();
        let signature = self.key.sign(&signing_bytes(&signer, nonce, &command));
        Envelope {
            command,
            signer,
            nonce,
            signature: to_hex(&signature.to_bytes()),
        }
    }
}
