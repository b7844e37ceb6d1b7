//! Counters for `/metrics`, in the Prometheus text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the latency histogram's buckets, seconds.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    pub applied: AtomicU64,
    /// Engine rejections by code (the command was sequenced and logged).
    rejected: Mutex<BTreeMap<String, u64>>,
    /// Refusals before sequencing (auth, malformed input, ...) by HTTP status and code: nothing was logged.
    refused: Mutex<BTreeMap<(u16, String), u64>>,
    /// Submission latency, from the request's arrival to its durable answer.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    pub log_entries: AtomicU64,
    pub log_bytes: AtomicU64,
    pub batches: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn rejected(&self, code: &str) {
        *lock(&self.rejected).entry(code.to_string()).or_default() += 1;
    }

    pub fn refused(&self, status: u16, code: &str) {
        *lock(&self.refused)
            .entry((status, code.to_string()))
            .or_default() += 1;
    }

    pub fn latency(&self, elapsed: std::time::Duration) {
        let s = elapsed.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS_S.iter().enumerate() {
            if s <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The exposition text; `below_maintenance` is read from the replica by the caller.
    pub fn render(&self, below_maintenance: usize, sub_accounts: usize) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP ballast_commands_applied_total Commands the engine applied.\n\
             # TYPE ballast_commands_applied_total counter\n\
             ballast_commands_applied_total {}",
            load(&self.applied)
        );
        let _ = writeln!(
            out,
            "# HELP ballast_commands_rejected_total Commands sequenced and logged that the engine rejected, by reason.\n\
             # TYPE ballast_commands_rejected_total counter"
        );
        for (code, n) in lock(&self.rejected).iter() {
            let _ = writeln!(
                out,
                "ballast_commands_rejected_total{{reason=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ballast_requests_refused_total Requests refused before sequencing (nothing logged), by status and reason.\n\
             # TYPE ballast_requests_refused_total counter"
        );
        for ((status, code), n) in lock(&self.refused).iter() {
            let _ = writeln!(
                out,
                "ballast_requests_refused_total{{status=\"{status}\",reason=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ballast_command_latency_seconds From a submission's arrival to its durable answer.\n\
             # TYPE ballast_command_latency_seconds histogram"
        );
        for (i, bound) in LATENCY_BUCKETS_S.iter().enumerate() {
            let _ = writeln!(
                out,
                "ballast_command_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                load(&self.latency_buckets[i])
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            out,
            "ballast_command_latency_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             ballast_command_latency_seconds_sum {}\n\
             ballast_command_latency_seconds_count {count}",
            load(&self.latency_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "# HELP ballast_log_entries Entries in the durable command log.\n\
             # TYPE ballast_log_entries gauge\n\
             ballast_log_entries {}\n\
             # HELP ballast_log_bytes Bytes of command log lines stored.\n\
             # TYPE ballast_log_bytes gauge\n\
             ballast_log_bytes {}\n\
             # HELP ballast_commit_batches_total Group commits (one durable transaction each).\n\
             # TYPE ballast_commit_batches_total counter\n\
             ballast_commit_batches_total {}\n\
             # HELP ballast_sub_accounts Sub-accounts in the engine.\n\
             # TYPE ballast_sub_accounts gauge\n\
             ballast_sub_accounts {sub_accounts}\n\
             # HELP ballast_accounts_below_maintenance Sub-accounts below maintenance health.\n\
             # TYPE ballast_accounts_below_maintenance gauge\n\
             ballast_accounts_below_maintenance {below_maintenance}",
            load(&self.log_entries),
            load(&self.log_bytes),
            load(&self.batches),
        );
        out
    }
}
