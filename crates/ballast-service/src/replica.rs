//! The read side: a second engine that applies every committed batch after the sequencer has made it durable, so
//! that readers (HTTP queries, the dashboard) lock only the replica and never the sequencer. The engine is
//! deterministic, so the replica reaches the same state hash as the sequencer, command for command.
//!
//! The replica also keeps the latest [`EVENTS_KEPT`] events, numbered from 1 in the order they happened, for paged
//! reads (`GET /v1/events`), and broadcasts each to the WebSocket streams.

use crate::sequencer::Sequenced;
use ballast_engine::{Engine, Event, SubAccountId};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// Events kept for paged reads; older ones are dropped (the command log keeps everything).
pub const EVENTS_KEPT: usize = 100_000;
/// Events a slow WebSocket subscriber may fall behind before it is told it lagged.
pub const STREAM_BUFFER: usize = 16_384;

/// One engine event as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PublishedEvent {
    /// Position in the stream of every event, from 1.
    pub id: u64,
    /// The log entry (command) that produced it.
    pub seq: u64,
    /// The command's sequencer time, seconds.
    pub timestamp: u64,
    /// The event itself, as `ballast run` prints it (`{"type": ..., ...}`).
    pub event: serde_json::Value,
    /// Every sub-account the event names, for per-account streams.
    #[serde(skip)]
    pub sub_accounts: Vec<SubAccountId>,
}

/// The fields of an event that name sub-accounts.
const ACCOUNT_FIELDS: [&str; 11] = [
    "sub_account",
    "target",
    "liquidator",
    "taker",
    "maker",
    "winner",
    "loser",
    "counterparty",
    "bankrupt",
    "from",
    "to",
];

fn named_sub_accounts(event: &serde_json::Value) -> Vec<SubAccountId> {
    let mut ids: Vec<SubAccountId> = ACCOUNT_FIELDS
        .iter()
        .filter_map(|f| event.get(*f).and_then(|v| v.as_u64()))
        .filter_map(|v| SubAccountId::try_from(v).ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// What readers see.
pub struct ReadModel {
    pub engine: Engine,
    /// The last log entry applied, and the chain head after it.
    pub seq: u64,
    pub head: String,
    pub events: VecDeque<Arc<PublishedEvent>>,
    /// Events ever published (the id of the newest).
    pub events_total: u64,
}

impl ReadModel {
    pub fn new(engine: Engine, seq: u64, head: String) -> ReadModel {
        ReadModel {
            engine,
            seq,
            head,
            events: VecDeque::new(),
            events_total: 0,
        }
    }

    /// Applies a committed batch; returns the events to broadcast.
    pub fn apply(&mut self, batch: &[Sequenced]) -> Vec<Arc<PublishedEvent>> {
        let mut published = Vec::new();
        for s in batch {
            let result = self.engine.apply(&s.command);
            debug_assert_eq!(
                result.as_ref().ok(),
                match &s.outcome {
                    crate::sequencer::Outcome::Applied(e) => Some(e),
                    crate::sequencer::Outcome::Rejected(_) => None,
                },
                "the replica diverged from the sequencer at seq {}",
                s.seq
            );
            self.seq = s.seq;
            self.head.clone_from(&s.head);
            let Ok(events) = result else { continue };
            for event in &events {
                self.events_total += 1;
                let json = event_json(event);
                let p = Arc::new(PublishedEvent {
                    id: self.events_total,
                    seq: s.seq,
                    timestamp: s.command.timestamp,
                    sub_accounts: named_sub_accounts(&json),
                    event: json,
                });
                if self.events.len() == EVENTS_KEPT {
                    self.events.pop_front();
                }
                self.events.push_back(p.clone());
                published.push(p);
            }
        }
        published
    }
}

/// An event's JSON (`{"type": ..., fields}`).
pub fn event_json(event: &Event) -> serde_json::Value {
    serde_json::to_value(event).expect("events always serialize")
}

/// The shared read model and the event broadcast.
#[derive(Clone)]
pub struct Replica {
    pub model: Arc<RwLock<ReadModel>>,
    pub events: broadcast::Sender<Arc<PublishedEvent>>,
}

impl Replica {
    pub fn new(model: ReadModel) -> Replica {
        Replica {
            model: Arc::new(RwLock::new(model)),
            events: broadcast::channel(STREAM_BUFFER).0,
        }
    }

    /// Starts the thread that applies committed batches in order; returns the sender the sequencer publishes to.
    pub fn start(&self) -> std::sync::mpsc::Sender<Vec<Sequenced>> {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Sequenced>>();
        let replica = self.clone();
        std::thread::Builder::new()
            .name("replica".into())
            .spawn(move || {
                for batch in rx {
                    let published = {
                        let mut model = replica.model.write().unwrap_or_else(|e| e.into_inner());
                        model.apply(&batch)
                    };
                    for p in published {
                        // No subscriber is fine.
                        let _ = replica.events.send(p);
                    }
                }
            })
            .expect("spawn the replica thread");
        tx
    }
}
