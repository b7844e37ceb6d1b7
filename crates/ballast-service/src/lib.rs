//! Ballast's live risk service: one sequencer applies signed commands to the engine in order and makes them durable
//! in the store before it acknowledges them; readers query a replica of the engine and stream its events.
//!
//! - [`auth`]: signed envelopes, trusted keys, nonces and who may submit what;
//! - [`sequencer`]: the single writer, group commit, recovery from the store;
//! - [`summary`]: JSON views of the engine's state (also `ballast run --summary`).

pub mod auth;
pub mod error;
pub mod sequencer;
pub mod summary;
