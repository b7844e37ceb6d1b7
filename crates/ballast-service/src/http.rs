//! The HTTP JSON API and the WebSocket event stream (`docs/service.md` documents every route; `docs/openapi.json`
//! is the machine-readable form, served at `/openapi.json`).
//!
//! Every refusal is a 4xx with `{"error": {"code", "message"}}` and changes nothing: malformed JSON, unknown fields,
//! oversized bodies, bad signatures, stale nonces, unknown accounts, unknown routes. An engine rejection of a
//! sequenced command is a 422 that names its log entry (`seq`): the command is in the log and its nonce is spent,
//! but the engine's state did not change.

use crate::auth::Envelope;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::replica::{PublishedEvent, Replica};
use crate::sequencer::{Handle, Outcome};
use crate::summary;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ballast_engine::{OwnerId, SubAccountId};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Largest request body accepted, bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most events one page returns.
pub const MAX_PAGE: usize = 1_000;

/// The machine-readable API description, kept in the repository.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");
/// The dashboard page (no build step: plain HTML and JavaScript, with a vendored chart library).
pub const DASHBOARD: &str = include_str!("../assets/dashboard.html");
/// The vendored chart library (uPlot, MIT licence).
pub const CHART_JS: &str = include_str!("../assets/uPlot.iife.min.js");
pub const CHART_CSS: &str = include_str!("../assets/uPlot.min.css");

#[derive(Clone)]
pub struct AppState {
    pub sequencer: Handle,
    pub replica: Replica,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/commands", post(submit))
        .route("/v1/status", get(status))
        .route("/v1/accounts/{owner}", get(account))
        .route("/v1/sub_accounts/{id}", get(sub_account))
        .route("/v1/sub_accounts", get(sub_accounts))
        .route("/v1/markets", get(markets))
        .route("/v1/pools", get(pools))
        .route("/v1/insurance", get(insurance))
        .route("/v1/events", get(events))
        .route("/v1/stream", get(stream))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/", get(dashboard))
        .route("/assets/uPlot.iife.min.js", get(chart_js))
        .route("/assets/uPlot.min.css", get(chart_css))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Counts a refusal in the metrics and returns it.
fn refuse(metrics: &Metrics, e: ApiError) -> Response {
    metrics.refused(e.status.as_u16(), e.code);
    tracing::info!(status = e.status.as_u16(), code = e.code, "request refused");
    e.into_response()
}

async fn submit(State(app): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let arrived = Instant::now();
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refuse(
                &app.metrics,
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
                ),
            )
        }
        Err(e) => {
            return refuse(
                &app.metrics,
                ApiError::bad_request("bad_body", e.body_text()),
            )
        }
    };
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return refuse(
                &app.metrics,
                ApiError::bad_request("bad_json", format!("request body: {e}")),
            )
        }
    };
    let verified = match envelope.verify() {
        Ok(v) => v,
        Err(e) => return refuse(&app.metrics, e),
    };
    let answer = match app.sequencer.submit(verified) {
        Ok(a) => a,
        Err(e) => return refuse(&app.metrics, e),
    };
    let sequenced = match answer.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return refuse(&app.metrics, e),
        Err(_) => {
            return refuse(
                &app.metrics,
                ApiError::unavailable("the sequencer stopped before answering"),
            )
        }
    };
    app.metrics.latency(arrived.elapsed());
    let kind = command_type(&sequenced.command.kind);
    match sequenced.outcome {
        Outcome::Applied(events) => {
            app.metrics
                .applied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(seq = sequenced.seq, command = kind, "applied");
            let events: Vec<_> = events.iter().map(crate::replica::event_json).collect();
            (
                StatusCode::OK,
                Json(json!({
                    "seq": sequenced.seq,
                    "timestamp": sequenced.command.timestamp,
                    "status": "applied",
                    "events": events,
                })),
            )
                .into_response()
        }
        Outcome::Rejected(r) => {
            app.metrics.rejected(r.code);
            tracing::info!(
                seq = sequenced.seq,
                command = kind,
                code = r.code,
                "rejected"
            );
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "seq": sequenced.seq,
                    "timestamp": sequenced.command.timestamp,
                    "status": "rejected",
                    "error": {"code": r.code, "message": r.message},
                })),
            )
                .into_response()
        }
    }
}

/// The command's `type` tag, for logs.
fn command_type(kind: &ballast_engine::CommandKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_default()
}

fn read<T>(app: &AppState, f: impl FnOnce(&crate::replica::ReadModel) -> T) -> T {
    let model = app.replica.model.read().unwrap_or_else(|e| e.into_inner());
    f(&model)
}

fn internal(app: &AppState, what: String) -> Response {
    // Only an arithmetic overflow in a view can get here; say so rather than fail silently.
    refuse(
        &app.metrics,
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unrepresentable", what),
    )
}

async fn status(State(app): State<AppState>) -> Response {
    read(&app, |m| {
        Json(json!({
            "seq": m.seq,
            "log_head": m.head,
            "now": m.engine.now_s(),
            "state_hash": m.engine.state_hash(),
            "sub_accounts": m.engine.sub_accounts().len(),
            "events": m.events_total,
        }))
        .into_response()
    })
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request("bad_path", e.body_text())
}

async fn account(
    State(app): State<AppState>,
    owner: Result<Path<OwnerId>, PathRejection>,
) -> Response {
    let Path(owner) = match owner {
        Ok(p) => p,
        Err(e) => return refuse(&app.metrics, path_error(e)),
    };
    read(&app, |m| match m.engine.owners().get(&owner) {
        None => refuse(
            &app.metrics,
            ApiError::not_found("unknown_owner", format!("owner {owner} is not registered")),
        ),
        Some(subs) => Json(json!({"owner": owner, "sub_accounts": subs})).into_response(),
    })
}

async fn sub_account(
    State(app): State<AppState>,
    id: Result<Path<SubAccountId>, PathRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(p) => p,
        Err(e) => return refuse(&app.metrics, path_error(e)),
    };
    read(&app, |m| {
        if id as usize >= m.engine.sub_accounts().len() {
            return refuse(
                &app.metrics,
                ApiError::not_found(
                    "unknown_sub_account",
                    format!("sub-account {id} does not exist"),
                ),
            );
        }
        match summary::sub_account(&m.engine, id) {
            Ok(s) => Json(s).into_response(),
            Err(e) => internal(&app, e),
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubAccountsQuery {
    /// Only sub-accounts whose maintenance health is below this (USD), e.g. 0 for the liquidatable ones.
    #[serde(default)]
    below: Option<ballast_num::Quote>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Sub-accounts sorted by maintenance health, lowest first (the ones nearest liquidation), at most `limit` (100).
async fn sub_accounts(
    State(app): State<AppState>,
    query: Result<Query<SubAccountsQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return refuse(
                &app.metrics,
                ApiError::bad_request("bad_query", e.body_text()),
            )
        }
    };
    let limit = q.limit.unwrap_or(100).min(MAX_PAGE);
    read(&app, |m| {
        let mut rows: Vec<(ballast_num::Quote, SubAccountId)> = (0..m.engine.sub_accounts().len())
            .filter_map(|i| {
                let id = i as SubAccountId;
                let h = m.engine.health(id).ok()?;
                match q.below {
                    Some(b) if h.maintenance >= b => None,
                    _ => Some((h.maintenance, id)),
                }
            })
            .collect();
        rows.sort();
        let mut out = Vec::with_capacity(limit.min(rows.len()));
        for (_, id) in rows.into_iter().take(limit) {
            match summary::sub_account(&m.engine, id) {
                Ok(s) => out.push(s),
                Err(e) => return internal(&app, e),
            }
        }
        Json(json!({"sub_accounts": out})).into_response()
    })
}

async fn markets(State(app): State<AppState>) -> Response {
    read(&app, |m| match summary::markets(&m.engine) {
        Ok(s) => Json(json!({"markets": s})).into_response(),
        Err(e) => internal(&app, e),
    })
}

async fn pools(State(app): State<AppState>) -> Response {
    read(&app, |m| match summary::pools(&m.engine) {
        Ok((pools, treasury)) => {
            Json(json!({"pools": pools, "treasury": treasury})).into_response()
        }
        Err(e) => internal(&app, e),
    })
}

async fn insurance(State(app): State<AppState>) -> Response {
    read(&app, |m| {
        let (pools, _) = match summary::pools(&m.engine) {
            Ok(p) => p,
            Err(e) => return internal(&app, e),
        };
        let funds: Vec<_> = pools
            .iter()
            .map(|p| {
                json!({
                    "asset": p.asset,
                    "fund": p.insurance_fund,
                    "shares": p.insurance_shares,
                    "bad_debt_covered": p.bad_debt_covered,
                    "socialized_loss": p.socialized_loss,
                })
            })
            .collect();
        match summary::insurance_stakes(&m.engine) {
            Ok(stakes) => Json(json!({"funds": funds, "stakes": stakes})).into_response(),
            Err(e) => internal(&app, e),
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Events with an id above this (0: from the oldest kept).
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
    /// Only events naming this sub-account.
    #[serde(default)]
    sub_account: Option<SubAccountId>,
}

async fn events(
    State(app): State<AppState>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return refuse(
                &app.metrics,
                ApiError::bad_request("bad_query", e.body_text()),
            )
        }
    };
    let limit = q.limit.unwrap_or(100).min(MAX_PAGE);
    read(&app, |m| {
        let first_kept = m.events.front().map_or(m.events_total + 1, |e| e.id);
        let start = q.after.saturating_add(1).max(first_kept);
        let skip = (start - first_kept) as usize;
        let page: Vec<&PublishedEvent> = m
            .events
            .iter()
            .skip(skip)
            .filter(|e| q.sub_account.is_none_or(|id| e.sub_accounts.contains(&id)))
            .take(limit)
            .map(|e| &**e)
            .collect();
        Json(json!({
            "events": page,
            "first_kept": first_kept,
            "last": m.events_total,
        }))
        .into_response()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    #[serde(default)]
    sub_account: Option<SubAccountId>,
}

/// WebSocket: every event as it is committed (or those naming one sub-account), one JSON text message each.
async fn stream(
    State(app): State<AppState>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return refuse(
                &app.metrics,
                ApiError::bad_request("bad_query", e.body_text()),
            )
        }
    };
    let rx = app.replica.events.subscribe();
    upgrade.on_upgrade(move |socket| forward(socket, rx, q.sub_account))
}

async fn forward(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<Arc<PublishedEvent>>,
    only: Option<SubAccountId>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Ok(e) => {
                    if only.is_some_and(|id| !e.sub_accounts.contains(&id)) {
                        continue;
                    }
                    let text = serde_json::to_string(&*e).expect("serializable");
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let text = json!({"lagged": n, "hint": "read the missed events from /v1/events"}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // The stream is one-way; anything but a close (or ping, answered by the library) is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    let (below, subs) = read(&app, |m| {
        (
            m.engine.below_maintenance().len(),
            m.engine.sub_accounts().len(),
        )
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(below, subs),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn chart_js() -> Response {
    ([(header::CONTENT_TYPE, "application/javascript")], CHART_JS).into_response()
}

async fn chart_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css")], CHART_CSS).into_response()
}

async fn not_found(State(app): State<AppState>, uri: axum::http::Uri) -> Response {
    refuse(
        &app.metrics,
        ApiError::not_found("no_route", format!("no route {}", uri.path())),
    )
}
