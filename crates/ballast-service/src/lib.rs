//! Ballast's live risk service: one sequencer applies signed commands to the engine in order and makes them durable
//! in the store before it acknowledges them; readers query a replica of the engine and stream its events.
//!
//! - [`auth`]: signed envelopes, trusted keys, nonces and who may submit what;
//! - [`sequencer`]: the single writer, group commit, recovery from the store;
//! - [`replica`]: the read side, a second engine fed the committed batches, and the event stream;
//! - [`http`]: the HTTP JSON API, the WebSocket stream, `/metrics`, `/openapi.json` and the dashboard;
//! - [`service`]: start and stop;
//! - [`client`]: signing commands as a client does;
//! - [`summary`]: JSON views of the engine's state (also `ballast run --summary`).

pub mod auth;
pub mod client;
pub mod error;
pub mod http;
pub mod metrics;
pub mod replica;
pub mod sequencer;
pub mod service;
pub mod summary;
