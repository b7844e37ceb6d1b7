//! Starting and stopping the service: open the store, recover, start the replica, the sequencer and the HTTP
//! server.

use crate::auth::KeysConfig;
use crate::http::{router, AppState};
use crate::metrics::Metrics;
use crate::replica::{ReadModel, Replica};
use crate::sequencer::{self, Handle, Sequenced};
use ballast_engine::log::sha256_hex;
use ballast_engine::ProtocolConfig;
use ballast_store::{Location, Store};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What `ballast serve` needs.
pub struct Options {
    /// The protocol file's bytes (the store is bound to their SHA-256) and the configuration parsed from them.
    pub config_bytes: Vec<u8>,
    pub config: ProtocolConfig,
    pub keys: KeysConfig,
    pub location: Location,
    pub listen: SocketAddr,
}

/// A running service.
pub struct Running {
    pub addr: SocketAddr,
    pub sequencer: Handle,
    pub replica: Replica,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    sequencer_thread: std::thread::JoinHandle<(sequencer::State, Store)>,
}

/// Seconds since the Unix epoch.
pub fn wall_clock_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Opens the store (creating it on first start), replays its log and starts serving on `options.listen`.
pub async fn start(options: Options) -> Result<Running, String> {
    let config_sha256 = sha256_hex(&options.config_bytes);
    let location = options.location.clone();
    let config = options.config.clone();
    // Opening and replaying do blocking I/O, off the async workers and outside the runtime's context (the
    // PostgreSQL client drives its own runtime).
    let (store, state) = off_runtime(move || -> Result<_, String> {
        let mut store =
            Store::open(&location, &config_sha256, wall_clock_s()).map_err(|e| e.to_string())?;
        let state = sequencer::recover(&mut store, config)?;
        Ok((store, state))
    })
    .await??;
    tracing::info!(
        store = %options.location.describe(),
        entries = store.last_seq(),
        state_hash = %state.engine.state_hash(),
        "recovered"
    );
    let metrics = Arc::new(Metrics::default());
    metrics
        .log_entries
        .store(store.last_seq(), Ordering::Relaxed);
    metrics
        .log_bytes
        .store(store.log_bytes(), Ordering::Relaxed);
    let replica = Replica::new(ReadModel::new(
        state.engine.clone(),
        state.encoder.seq(),
        state.encoder.head().to_string(),
    ));
    let to_replica = replica.start();
    let publish_metrics = metrics.clone();
    let publish: sequencer::Publish = Box::new(move |batch: &[Sequenced]| {
        let bytes: usize = batch.iter().map(|s| s.line_bytes).sum();
        publish_metrics
            .log_entries
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        publish_metrics
            .log_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        publish_metrics.batches.fetch_add(1, Ordering::Relaxed);
        let _ = to_replica.send(batch.to_vec());
    });
    let (handle, sequencer_thread) =
        sequencer::spawn(state, store, options.keys, Box::new(wall_clock_s), publish);
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let app = router(AppState {
        sequencer: handle.clone(),
        replica: replica.clone(),
        metrics,
    });
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await
    });
    tracing::info!(%addr, "listening");
    Ok(Running {
        addr,
        sequencer: handle,
        replica,
        shutdown,
        server,
        sequencer_thread,
    })
}

impl Running {
    /// Stops accepting requests, lets the sequencer finish what it holds, and returns the final state hash.
    pub async fn stop(self) -> Result<String, String> {
        let _ = self.shutdown.send(());
        let _ = self.server.await;
        drop(self.sequencer);
        drop(self.replica);
        let thread = self.sequencer_thread;
        off_runtime(move || {
            let (state, store) = thread
                .join()
                .map_err(|_| "the sequencer thread panicked".to_string())?;
            drop(store);
            Ok(state.engine.state_hash())
        })
        .await?
    }
}

/// Runs blocking work on a thread of its own (outside the async runtime) and waits for its result.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("blocking".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.await.map_err(|_| "a blocking task panicked".to_string())
}
