//! The sequencer: the one thread that owns the engine and the store, and the only writer.
//!
//! It takes verified envelopes from a bounded queue, in arrival order, a batch at a time (every envelope waiting,
//! up to [`MAX_BATCH`]). For each: the nonce and the signer's authority are checked ([`AuthState::authorize`]; a
//! refusal is answered at once and changes nothing), the command is stamped with the sequencer's time (wall-clock
//! seconds, never going back) and applied to the engine, and its log line is written with the envelope's signer,
//! nonce and signature. The whole batch is then appended to the store in one transaction (group commit: one fsync
//! for the batch) and only then answered and published to the readers. An acknowledged command is therefore
//! always in the durable log, and readers never see a state the log could lose.
//!
//! If the store fails, the engine has moved past the durable log: the sequencer answers every waiting submission
//! with `unavailable`, refuses everything after, and stops. A restart recovers from the store (`recover`), which
//! holds exactly the acknowledged commands plus possibly a batch that was written but not answered.

use crate::auth::{AuthState, KeysConfig, PublicKey, Verified};
use crate::error::ApiError;
use ballast_engine::log::{decode_entry, sha256_hex, LogEncoder};
use ballast_engine::{Command, Engine, Event, ProtocolConfig, Rejection};
use ballast_store::{Entry, Store};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Most envelopes sequenced and committed together.
pub const MAX_BATCH: usize = 4096;
/// Envelopes that may wait for the sequencer; beyond that, submissions are refused with `busy`.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Entries read from the store at a time during recovery.
const RECOVERY_CHUNK: usize = 10_000;

/// What the engine did with a sequenced command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied(Vec<Event>),
    Rejected(Rejection),
}

/// One sequenced command, as answered and published.
#[derive(Clone, Debug)]
pub struct Sequenced {
    pub seq: u64,
    /// SHA-256 of this entry's log line: the chain head once it is written.
    pub head: String,
    /// Bytes of the log line.
    pub line_bytes: usize,
    pub command: Command,
    pub signer: PublicKey,
    pub outcome: Outcome,
}

/// The `auth` member of a service log line.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineAuth {
    pub signer: PublicKey,
    pub nonce: u64,
    pub signature: String,
}

/// The engine, the service's own state and the log position, as recovered or as the sequencer leaves them.
pub struct State {
    pub engine: Engine,
    pub auth: AuthState,
    pub encoder: LogEncoder,
}

/// Rebuilds the state from the store: replays every log entry in order, checking the hash chain from the header.
pub fn recover(store: &mut Store, config: ProtocolConfig) -> Result<State, String> {
    let genesis = store.header().genesis;
    let mut engine = Engine::new(config, genesis);
    let mut auth = AuthState::default();
    let mut encoder = LogEncoder::resume(0, sha256_hex(store.header_line().as_bytes()));
    let mut prev = encoder.head().to_string();
    loop {
        let entries = store
            .read(encoder.seq(), RECOVERY_CHUNK)
            .map_err(|e| e.to_string())?;
        if entries.is_empty() {
            break;
        }
        for Entry { seq, line } in entries {
            let decoded =
                decode_entry(&line, seq, &prev).map_err(|e| format!("log entry {seq}: {e}"))?;
            let line_auth: Option<LineAuth> = decoded
                .extra
                .get("auth")
                .map(|v| serde_json::from_value(v.clone()))
                .transpose()
                .map_err(|e| format!("log entry {seq}: bad auth: {e}"))?;
            let applied = engine.apply(&decoded.command).is_ok();
            if let Some(a) = line_auth {
                auth.record(&decoded.command.kind, a.signer, a.nonce, applied);
            }
            prev = sha256_hex(line.as_bytes());
            encoder = LogEncoder::resume(seq, prev.clone());
        }
    }
    Ok(State {
        engine,
        auth,
        encoder,
    })
}

/// A verified envelope waiting for the sequencer, and where to send its answer.
pub struct Submission {
    pub verified: Verified,
    pub reply: oneshot::Sender<Result<Sequenced, ApiError>>,
}

/// The submitting side of the sequencer's queue.
#[derive(Clone)]
pub struct Handle {
    queue: SyncSender<Submission>,
    stopped: Arc<AtomicBool>,
}

impl Handle {
    /// Queues a verified envelope; the answer comes once it is durable (or refused).
    pub fn submit(
        &self,
        verified: Verified,
    ) -> Result<oneshot::Receiver<Result<Sequenced, ApiError>>, ApiError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(ApiError::unavailable(
                "the sequencer has stopped (store failure or shutdown); nothing was sequenced",
            ));
        }
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Submission { verified, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "busy",
                format!("{QUEUE_CAPACITY} commands are waiting to be sequenced; retry shortly"),
            )),
            Err(TrySendError::Disconnected(_)) => Err(ApiError::unavailable(
                "the sequencer has stopped; nothing was sequenced",
            )),
        }
    }
}

/// Called with each committed batch, in order, before its submitters are answered.
pub type Publish = Box<dyn FnMut(&[Sequenced]) + Send>;

/// Seconds since the Unix epoch, from the wall clock.
pub type Clock = Box<dyn Fn() -> u64 + Send>;

/// Starts the sequencer thread; it ends when every [`Handle`] is dropped, returning the final state and store.
pub fn spawn(
    state: State,
    store: Store,
    keys: KeysConfig,
    clock: Clock,
    publish: Publish,
) -> (Handle, std::thread::JoinHandle<(State, Store)>) {
    let (queue, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
    let stopped = Arc::new(AtomicBool::new(false));
    let handle = Handle {
        queue,
        stopped: stopped.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || run(state, store, keys, clock, publish, rx, stopped))
        .expect("spawn the sequencer thread");
    (handle, thread)
}

fn run(
    mut state: State,
    mut store: Store,
    keys: KeysConfig,
    clock: Clock,
    mut publish: Publish,
    rx: Receiver<Submission>,
    stopped: Arc<AtomicBool>,
) -> (State, Store) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let mut entries = Vec::with_capacity(batch.len());
        let mut done = Vec::with_capacity(batch.len());
        for Submission { verified, reply } in batch.drain(..) {
            if let Err(e) = state.auth.authorize(&keys, &state.engine, &verified) {
                let _ = reply.send(Err(e));
                continue;
            }
            let timestamp = clock().max(state.engine.now_s());
            let command = Command {
                timestamp,
                kind: verified.command,
            };
            let outcome = match state.engine.apply(&command) {
                Ok(events) => Outcome::Applied(events),
                Err(rejection) => Outcome::Rejected(rejection),
            };
            let applied = matches!(outcome, Outcome::Applied(_));
            state
                .auth
                .record(&command.kind, verified.signer, verified.nonce, applied);
            let auth = LineAuth {
                signer: verified.signer,
                nonce: verified.nonce,
                signature: verified.signature,
            };
            let extra = format!(
                "\"auth\":{}",
                serde_json::to_string(&auth).expect("serializable")
            );
            let line = state.encoder.entry_with(&command, Some(&extra));
            let seq = state.encoder.seq();
            done.push((
                Sequenced {
                    seq,
                    head: state.encoder.head().to_string(),
                    line_bytes: line.len(),
                    command,
                    signer: verified.signer,
                    outcome,
                },
                reply,
            ));
            entries.push(Entry { seq, line });
        }
        if let Err(e) = store.append(&entries) {
            tracing::error!(error = %e, "store append failed; the sequencer stops");
            stopped.store(true, Ordering::Release);
            for (_, reply) in done {
                let _ = reply.send(Err(ApiError::unavailable(format!(
                    "the store failed ({e}); the command may or may not be in the log: check its nonce after a restart"
                ))));
            }
            break;
        }
        let sequenced: Vec<Sequenced> = done.iter().map(|(s, _)| s.clone()).collect();
        publish(&sequenced);
        for (s, reply) in done {
            let _ = reply.send(Ok(s));
        }
    }
    stopped.store(true, Ordering::Release);
    (state, store)
}
