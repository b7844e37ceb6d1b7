//! Who may submit what: signed command envelopes, the keys the service trusts, and per-key nonces.
//!
//! Every submission is an **envelope**: a command (the engine's JSON, without `timestamp`: the sequencer stamps
//! it), the signer's ed25519 public key, a nonce and a signature. The signature covers the **signing bytes**:
//!
//! ```text
//! ballast-command-v1\n<signer, 64 lowercase hex>\n<nonce, decimal>\n<command, canonical JSON>
//! ```
//!
//! The canonical JSON of a command is the engine's own serialization (`serde_json` of `CommandKind`): fields in the
//! order `docs/commands.md` lists them, every field written (defaults included, e.g. `"reduce_only":false`), no
//! spaces. The service parses the submitted command, re-serializes it and verifies the signature over those bytes,
//! so a client that wrote the fields in another order gets a `bad_signature` error that shows the bytes to sign.
//!
//! **Nonces** are per signing key: each accepted envelope's nonce must exceed the last one sequenced for its key (a
//! counter or a timestamp in microseconds both work; gaps are allowed, repeats and going back are not). A nonce is
//! consumed when the command is sequenced, whether the engine applies or rejects it, so a captured envelope can never
//! be replayed.
//!
//! **Authority** (`authorize`): an owner's first command, `create_account`, binds the owner id to the key that
//! signed it (first come, first served); from then on only that key acts for the owner's sub-accounts. Oracle prices
//! come only from the keys configured for that asset, fills only from the matcher keys, administrative commands only
//! from the admin key, and liquidations from the owner of the liquidating sub-account (which the engine checks is a
//! registered liquidator). Permissionless commands (settlement, bankruptcy resolution, accrual, expiry, pool
//! liquidation) need any known key: an owner's, an oracle's, the matcher's or the admin's.

use crate::error::ApiError;
use ballast_engine::{CommandKind, Engine, OwnerId, SubAccountId};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The first line of the signing bytes: names the scheme and its version.
pub const SIGNING_DOMAIN: &str = "ballast-command-v1";

/// An ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn hex(&self) -> String {
        to_hex(&self.0)
    }

    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let bytes = from_hex(text)?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("a public key is 32 bytes (64 hex digits), not {}", b.len())
        })?;
        VerifyingKey::from_bytes(&key).map_err(|_| "not a valid ed25519 public key".to_string())?;
        Ok(PublicKey(key))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.hex())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PublicKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("hex of odd length {}", text.len()));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("not hex at position {i}"))
        })
        .collect()
}

/// A submission as it arrives (`POST /v1/commands`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub command: CommandKind,
    pub signer: PublicKey,
    pub nonce: u64,
    /// 128 hex digits.
    pub signature: String,
}

/// An envelope whose signature verified over its canonical bytes.
#[derive(Clone, Debug)]
pub struct Verified {
    pub command: CommandKind,
    pub signer: PublicKey,
    pub nonce: u64,
    pub signature: String,
}

/// The bytes a signer signs for `command` with `nonce`.
pub fn signing_bytes(signer: &PublicKey, nonce: u64, command: &CommandKind) -> Vec<u8> {
    let canonical = serde_json::to_string(command).expect("commands always serialize");
    format!("{SIGNING_DOMAIN}\n{}\n{nonce}\n{canonical}", signer.hex()).into_bytes()
}

impl Envelope {
    /// Checks the signature over the canonical bytes.
    pub fn verify(self) -> Result<Verified, ApiError> {
        let bytes = signing_bytes(&self.signer, self.nonce, &self.command);
        let signature = from_hex(&self.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_signature",
                    "signature: expected 128 hex digits (64 bytes)",
                )
            })?;
        let key = VerifyingKey::from_bytes(&self.signer.0).expect("checked when parsed");
        key.verify(&bytes, &signature).map_err(|_| {
            ApiError::unauthorized(
                "bad_signature",
                format!(
                    "the signature does not verify over the canonical bytes {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
            )
        })?;
        Ok(Verified {
            command: self.command,
            signer: self.signer,
            nonce: self.nonce,
            signature: self.signature,
        })
    }
}

/// The keys the service trusts, from the keys file (`ballast serve --keys`): never logged.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Signs administrative commands.
    pub admin: PublicKey,
    /// Sign perp and option fills from the venue's matching engine.
    #[serde(default)]
    pub matchers: Vec<PublicKey>,
    /// Per asset symbol, the keepers whose prices are accepted.
    #[serde(default)]
    pub oracles: BTreeMap<String, Vec<PublicKey>>,
}

impl KeysConfig {
    pub fn from_toml(source: &str, text: &str) -> Result<KeysConfig, String> {
        toml::from_str(text).map_err(|e| format!("{source}: {}", e.to_string().trim_end()))
    }

    fn is_oracle(&self, key: &PublicKey) -> bool {
        self.oracles.values().any(|keys| keys.contains(key))
    }
}

/// The service's own state, rebuilt by replaying the log: which key acts for which owner, and each key's last
/// nonce.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct AuthState {
    pub owners: BTreeMap<OwnerId, PublicKey>,
    pub nonces: BTreeMap<PublicKey, u64>,
}

/// Who a command needs.
enum Authority<'a> {
    Owner(OwnerId),
    SubAccount(SubAccountId),
    Oracle(&'a str),
    Matcher,
    Admin,
    /// A new owner: binds the owner to the signer.
    NewOwner(OwnerId),
    AnyKnown,
}

fn authority(command: &CommandKind) -> Authority<'_> {
    use CommandKind as C;
    match command {
        C::CreateAccount { owner } => Authority::NewOwner(*owner),
        C::OpenSubAccount { owner, .. } => Authority::Owner(*owner),
        C::Deposit { sub_account, .. }
        | C::Withdraw { sub_account, .. }
        | C::StakeInsurance { sub_account, .. }
        | C::RequestUnstake { sub_account, .. }
        | C::Unstake { sub_account, .. }
        | C::PoolDeposit { sub_account, .. }
        | C::PoolWithdraw { sub_account, .. }
        | C::PoolTrade { sub_account, .. } => Authority::SubAccount(*sub_account),
        C::Transfer { from, .. } => Authority::SubAccount(*from),
        C::Liquidate { liquidator, .. } => Authority::SubAccount(*liquidator),
        C::OraclePrice { asset, .. } => Authority::Oracle(asset),
        C::PerpFill { .. } | C::UpdateFunding { .. } => Authority::Matcher,
        C::ListAsset { .. }
        | C::SetMarketRisk { .. }
        | C::OptionVol { .. }
        | C::OpenCounterpartyPool {}
        | C::RegisterLiquidator { .. } => Authority::Admin,
        C::AccrueInterest { .. }
        | C::ExpireMarket { .. }
        | C::SettlePnl { .. }
        | C::SettleVenueClaims { .. }
        | C::ResolveBankruptcy { .. }
        | C::PoolLiquidate { .. } => Authority::AnyKnown,
    }
}

impl AuthState {
    /// May `v` be sequenced now? Checks the nonce, then the signer's authority for the command. Changes nothing.
    pub fn authorize(
        &self,
        keys: &KeysConfig,
        engine: &Engine,
        v: &Verified,
    ) -> Result<(), ApiError> {
        if let Some(&last) = self.nonces.get(&v.signer) {
            if v.nonce <= last {
                return Err(ApiError::conflict(
                    "stale_nonce",
                    format!(
                        "nonce {} is not above {last}, the last one sequenced for this key",
                        v.nonce
                    ),
                ));
            }
        }
        let owner_of = |owner: OwnerId| self.owners.get(&owner);
        let denied = |what: String| Err(ApiError::forbidden("not_authorized", what));
        match authority(&v.command) {
            Authority::NewOwner(owner) => match owner_of(owner) {
                Some(_) => denied(format!(
                    "owner {owner} is already registered to another key"
                )),
                None => Ok(()),
            },
            Authority::Owner(owner) => match owner_of(owner) {
                Some(k) if *k == v.signer => Ok(()),
                Some(_) => denied(format!("this key does not act for owner {owner}")),
                None => Err(ApiError::not_found(
                    "unknown_owner",
                    format!("owner {owner} is not registered (create_account first)"),
                )),
            },
            Authority::SubAccount(id) => {
                let sub = engine.sub_accounts().get(id as usize).ok_or_else(|| {
                    ApiError::not_found(
                        "unknown_sub_account",
                        format!("sub-account {id} does not exist"),
                    )
                })?;
                match owner_of(sub.owner) {
                    Some(k) if *k == v.signer => Ok(()),
                    _ => denied(format!("this key does not act for sub-account {id}")),
                }
            }
            Authority::Oracle(asset) => match keys.oracles.get(asset) {
                Some(list) if list.contains(&v.signer) => Ok(()),
                _ => denied(format!("this key is not an oracle for {asset}")),
            },
            Authority::Matcher if keys.matchers.contains(&v.signer) => Ok(()),
            Authority::Matcher => {
                denied("fills and funding samples come only from the matcher keys".into())
            }
            Authority::Admin if keys.admin == v.signer => Ok(()),
            Authority::Admin => denied("administrative commands need the admin key".into()),
            Authority::AnyKnown => {
                let known = keys.admin == v.signer
                    || keys.matchers.contains(&v.signer)
                    || keys.is_oracle(&v.signer)
                    || self.owners.values().any(|k| *k == v.signer);
                if known {
                    Ok(())
                } else {
                    denied("unknown key: register an owner with create_account first".into())
                }
            }
        }
    }

    /// Records a sequenced envelope: its nonce, and the owner it registered if the engine applied a
    /// `create_account`.
    pub fn record(&mut self, command: &CommandKind, signer: PublicKey, nonce: u64, applied: bool) {
        self.nonces.insert(signer, nonce);
        if let (CommandKind::CreateAccount { owner }, true) = (command, applied) {
            self.owners.insert(*owner, signer);
        }
    }
}
