//! The canonical state hash: SHA-256 over a fixed, documented encoding of the whole state.
//!
//! Encoding: a format tag, then every field in a fixed order, integers little-endian at fixed width, strings and
//! sequences prefixed by their length (u64). Maps are walked in key order (`BTreeMap`), balances in asset order.
//! Derived state (the holder index, each balance's slot in it) is not hashed: two engines that reached the same
//! state by different paths hash the same.
//!
//! One walk ([`Engine::encode`]) writes the encoding into a [`Sink`]: SHA-256 for [`Engine::state_hash`], a byte
//! vector for [`Engine::snapshot`]. So a snapshot is exactly the bytes the hash consumes and cannot miss a hashed
//! field; [`crate::snapshot`] documents the walk field by field and restores it.

use crate::engine::{Engine, MarginKind};
use sha2::{Digest, Sha256};

/// Version of the encoding; bump on any change to an encoding that has been released (v3: perp loss ledgers,
/// funding rate, the counterparty pool and its shares; v4: option series, their mark volatility and settlement price, portfolio margin).
pub const STATE_HASH_FORMAT: &str = "ballast-state-v4";

/// Where the encoding goes: a SHA-256 hasher ([`Engine::state_hash`]) or a byte vector ([`Engine::snapshot`]).
pub(crate) trait Sink {
    fn write(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn write(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes the encoding's primitive values into a [`Sink`].
pub(crate) struct Encoder<S: Sink>(pub S);

impl<S: Sink> Encoder<S> {
    fn u64(&mut self, v: u64) {
        self.0.write(&v.to_le_bytes());
    }
    fn i128(&mut self, v: i128) {
        self.0.write(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.write(&[v as u8]);
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.0.write(v);
    }
}

impl Engine {
    /// SHA-256 of the canonical encoding of the whole state, as lowercase hex: the SHA-256 of
    /// [`Engine::snapshot`]'s bytes.
    pub fn state_hash(&self) -> String {
        let mut e = Encoder(Sha256::new());
        self.encode(&mut e);
        let digest = e.0.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The canonical encoding of the whole state: exactly the bytes [`Engine::state_hash`] hashes, and what
    /// [`Engine::from_snapshot`] restores (the format is documented in [`crate::snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut e = Encoder(Vec::new());
        self.encode(&mut e);
        e.0
    }

    /// The one walk over every persistent field, in the documented order.
    pub(crate) fn encode<S: Sink>(&self, e: &mut Encoder<S>) {
        e.bytes(STATE_HASH_FORMAT.as_bytes());
        e.u64(self.now_s);
        e.u64(self.applied);
        // Parameters: the canonical JSON of each config struct (field order is fixed by the types).
        e.bytes(&serde_json::to_vec(&self.protocol).expect("serializable"));
        e.bytes(&serde_json::to_vec(&self.tiers).expect("serializable"));
        let grid = self.portfolio_grid.as_ref().map(|g| &g.config);
        e.bytes(&serde_json::to_vec(&grid).expect("serializable"));
        e.u64(self.assets.len() as u64);
        e.u64(self.quote_asset as u64);
        for (i, asset) in self.assets.iter().enumerate() {
            e.bytes(&serde_json::to_vec(asset).expect("serializable"));
            let p = &self.pools[i];
            for v in [
                p.deposits_scaled,
                p.borrows_scaled,
                p.supply_index.raw(),
                p.borrow_index.raw(),
            ] {
                e.i128(v);
            }
            e.u64(p.last_accrual_s);
            for v in [
                p.vault.raw(),
                p.treasury_scaled,
                p.insurance_scaled,
                p.insurance_shares,
                p.bad_debt_covered.raw(),
                p.socialized_loss.raw(),
                p.withdrawals_paused_until_s as i128,
                p.rounding_surplus,
                p.total_in.raw(),
                p.total_out.raw(),
            ] {
                e.i128(v);
            }
            match &self.oracles[i] {
                None => e.bool(false),
                Some(o) => {
                    e.bool(true);
                    e.i128(o.price.raw());
                    e.i128(o.confidence.raw());
                    e.u64(o.publish_time_s);
                    e.i128(o.reference.raw());
                }
            }
        }
        e.bytes(&serde_json::to_vec(&self.perp_tiers).expect("serializable"));
        e.u64(self.markets.len() as u64);
        for (m, market) in self.markets.iter().enumerate() {
            e.bytes(&serde_json::to_vec(&self.market_configs[m]).expect("serializable"));
            e.i128(market.open_interest.raw());
            e.i128(market.funding_index.raw());
            e.u64(market.last_funding_s);
            e.i128(market.funding_rate.raw());
            e.u64(market.funding_rate_until_s);
            e.i128(market.fees_collected.raw());
            e.i128(market.insurance_collected.raw());
            e.i128(market.funding_dust);
            e.i128(market.claims_written_off.raw());
            e.i128(market.insurance_paid.raw());
            e.i128(market.socialized_loss.raw());
            e.u64(market.withdrawals_paused_until_s);
            e.bool(market.reduce_only);
            e.bool(market.paused);
            e.i128(market.multiplier_from.raw());
            e.i128(market.multiplier_to.raw());
            e.u64(market.phase_start_s);
            e.u64(market.phase_s);
            e.i128(market.mark_vol.raw());
            match market.settlement_price {
                None => e.bool(false),
                Some(p) => {
                    e.bool(true);
                    e.i128(p.raw());
                }
            }
        }
        e.u64(self.stakes.len() as u64);
        for ((id, asset), stake) in &self.stakes {
            e.u64(*id as u64);
            e.u64(*asset as u64);
            e.i128(stake.shares);
            e.i128(stake.unstake_shares);
            e.u64(stake.unstake_requested_s);
        }
        match self.lp.sub_account {
            None => e.bool(false),
            Some(id) => {
                e.bool(true);
                e.u64(id as u64);
            }
        }
        e.i128(self.lp.total_shares);
        e.u64(self.lp_shares.len() as u64);
        for (id, shares) in &self.lp_shares {
            e.u64(*id as u64);
            e.i128(*shares);
        }
        e.u64(self.withdrawal_pauses.len() as u64);
        for (id, until) in &self.withdrawal_pauses {
            e.u64(*id as u64);
            e.u64(*until);
        }
        e.u64(self.liquidators.len() as u64);
        for id in &self.liquidators {
            e.u64(*id as u64);
        }
        e.u64(self.owners.len() as u64);
        for (owner, subs) in &self.owners {
            e.u64(*owner);
            e.u64(subs.len() as u64);
            for s in subs {
                e.u64(*s as u64);
            }
        }
        e.u64(self.sub_accounts.len() as u64);
        for sub in &self.sub_accounts {
            e.u64(sub.owner);
            match sub.margin {
                MarginKind::Cross => e.u64(u64::MAX),
                MarginKind::Portfolio => e.u64(u64::MAX - 1),
                MarginKind::Isolated(a) => e.u64(a as u64),
            }
            e.bool(sub.below_maintenance);
            e.u64(sub.balances.len() as u64);
            for b in &sub.balances {
                e.u64(b.asset as u64);
                e.i128(b.scaled);
            }
            e.u64(sub.perps.len() as u64);
            for p in &sub.perps {
                e.u64(p.market as u64);
                e.i128(p.base.raw());
                e.i128(p.quote.raw());
                e.i128(p.funding_snapshot.raw());
            }
        }
    }
}
