//! Ballast's engine: a deterministic state machine over assets, lending pools, accounts and sub-accounts, oracle
//! prices and margin.
//!
//! The one entry point is [`Engine::apply`]: a [`Command`] (with the sequencer's timestamp) is validated in full,
//! then either applied (returning [`Event`]s) or rejected ([`Rejection`]) with the state untouched. The engine does
//! no I/O, reads no clock, uses no randomness and no floats for money; replaying the same commands gives the same
//! [`Engine::state_hash`].

#![forbid(unsafe_code)]

pub mod command;
pub mod config;
pub mod engine;
pub mod hash;
pub mod health;
pub mod limits;
pub mod log;
mod maintenance;
pub mod option;
pub mod oracle;
pub mod perp;
pub mod pool;
pub mod portfolio;
pub mod snapshot;

pub use command::{
    Command, CommandKind, Event, MarginSpec, OwnerId, Rejection, SliceBalance, SlicePosition,
    SubAccountId,
};
pub use config::{AssetConfig, ConfigErrors, ProtocolConfig};
pub use engine::{
    AssetIdx, Engine, LpPool, MarginKind, SubAccount, POOL_OWNER, POOL_SHARE_DECIMALS,
};
pub use health::Health;
pub use snapshot::SnapshotError;
