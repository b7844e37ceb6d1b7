//! `ballast serve`: the live risk service (`ballast-service`; `docs/service.md`).

use crate::{load_config, read_text, Failure};
use ballast_service::auth::KeysConfig;
use ballast_store::Location;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The protocol file (TOML); the store remembers its SHA-256 and refuses another one.
    #[arg(long)]
    pub config: PathBuf,
    /// The keys file (TOML): the admin key, the matcher keys and each asset's oracle keys (public keys, hex).
    #[arg(long)]
    pub keys: PathBuf,
    /// Data directory of the embedded SQLite store, created on first start.
    #[arg(long, default_value = "ballast-data", conflicts_with = "database")]
    pub data: PathBuf,
    /// A PostgreSQL connection URL (`postgres://user:password@host/database`) instead of the data directory.
    #[arg(long)]
    pub database: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

pub fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let loaded = load_config(&args.config)?;
    let keys_text = read_text(&args.keys, "keys file")?;
    let keys = KeysConfig::from_toml(&args.keys.display().to_string(), &keys_text)
        .map_err(Failure::input)?;
    let location = match &args.database {
        Some(url) => Location::Postgres(url.clone()),
        None => Location::Sqlite(args.data.clone()),
    };
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BALLAST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let running = ballast_service::service::start(ballast_service::service::Options {
            config_bytes: loaded.bytes,
            config: loaded.config,
            keys,
            location,
            listen: args.listen,
        })
        .await
        .map_err(Failure::input)?;
        eprintln!("ballast serve: listening on http://{}", running.addr);
        let _ = tokio::signal::ctrl_c().await;
        let hash = running.stop().await.map_err(Failure::internal)?;
        eprintln!("ballast serve: stopped at state hash {hash}");
        Ok(())
    })
}
