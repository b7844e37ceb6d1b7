//! `ballast option price`: a European option's price and Greeks, or its implied volatility, from `ballast-risk`.
//!
//! ```text
//! ballast option price --model black-scholes|black-76 --kind call|put --spot S --strike K --rate R
//!     [--dividend-yield Q] (--vol SIGMA | --price P) --expiry-years T [--json]
//! ```
//!
//! A contract other tools script (documented in `docs/risk.md`): with `--vol` it prints
//! `{"price","delta","gamma","vega","theta","rho"}`, with `--price` `{"implied_vol"}`, one JSON object on one line.
//! This is the f64 analytics side: inputs are read as decimal floating-point numbers and JSON outputs are JSON
//! numbers (IEEE-754 doubles printed in the shortest form that reads back to the same double), unlike the engine's
//! money, which is exact decimal strings. Without `--json` it prints a readable table.
//!
//! Errors (exit 2, one line on stderr, `error: option price: ...`): an invalid input, naming the flag and the rule;
//! a price no volatility fits, naming the bound it breaks. An implied-volatility solve that does not converge (not
//! expected for any valid input) exits 1.

use crate::Failure;
use ballast_risk::{EuropeanOption, Model, OptionError, OptionInputs, OptionKind};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct OptionArgs {
    #[command(subcommand)]
    command: OptionCommand,
}

#[derive(Debug, Subcommand)]
enum OptionCommand {
    /// Price a European option with its Greeks (`--vol`), or imply its volatility from a price (`--price`).
    Price(PriceArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModelArg {
    /// Spot with a continuous dividend or staking yield (`--dividend-yield`).
    BlackScholes,
    /// `--spot` is the forward (or futures) price for the expiry, discounted at `--rate`.
    #[value(name = "black-76")]
    Black76,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Call,
    Put,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("volatility_or_price").required(true).args(["vol", "price"])))]
struct PriceArgs {
    /// Pricing model.
    #[arg(long, value_enum)]
    model: ModelArg,
    /// Call or put.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Spot price (black-scholes) or forward price for the expiry (black-76); > 0.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    spot: f64,
    /// Strike, in the units of --spot; > 0.
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    strike: f64,
    /// Risk-free rate, annual, continuously compounded (0.05 = 5 %); may be negative.
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    rate: f64,
    /// Continuous yield of the underlying (dividend, staking, foreign rate), annual; black-scholes only.
    #[arg(
        long,
        value_name = "Q",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    dividend_yield: f64,
    /// Volatility, annual (0.2 = 20 %); > 0. Prints the price and Greeks.
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true)]
    vol: Option<f64>,
    /// An option price, in the units of --spot; prints the implied volatility instead of the Greeks.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    price: Option<f64>,
    /// Time to expiry in years; > 0.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    expiry_years: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The `--vol` output, fields in the contract's order.
#[derive(Serialize)]
struct GreeksJson {
    price: f64,
    delta: f64,
    gamma: f64,
    vega: f64,
    theta: f64,
    rho: f64,
}

#[derive(Serialize)]
struct ImpliedVolJson {
    implied_vol: f64,
}

pub fn option(args: &OptionArgs) -> Result<(), Failure> {
    match &args.command {
        OptionCommand::Price(price_args) => price(price_args),
    }
}

/// The library names inputs as in Rust (`expiry_years`); the message names them as flags (`--expiry-years`).
fn failure(error: OptionError) -> Failure {
    let message = match &error {
        OptionError::Input { field, value, rule } => {
            format!("--{} {rule}, got {value}", field.replace('_', "-"))
        }
        _ => error.to_string(),
    };
    match error {
        OptionError::NoConvergence { .. } => Failure::internal(format!("option price: {message}")),
        _ => Failure::input(format!("option price: {message}")),
    }
}

fn price(args: &PriceArgs) -> Result<(), Failure> {
    let model = match args.model {
        ModelArg::BlackScholes => Model::BlackScholes,
        ModelArg::Black76 => Model::Black76,
    };
    let kind = match args.kind {
        KindArg::Call => OptionKind::Call,
        KindArg::Put => OptionKind::Put,
    };
    let option = EuropeanOption::new(OptionInputs {
        model,
        kind,
        underlying: args.spot,
        strike: args.strike,
        rate: args.rate,
        dividend_yield: args.dividend_yield,
        expiry_years: args.expiry_years,
    })
    .map_err(|error| match error {
        // For black-76 the library calls the underlying `forward`; the flag is still --spot.
        OptionError::Input {
            field: "forward",
            value,
            rule,
        } => Failure::input(format!(
            "option price: --spot (the forward, for black-76) {rule}, got {value}"
        )),
        other => failure(other),
    })?;
    let header = [
        ("model", model.name().to_string()),
        ("kind", kind.name().to_string()),
        (
            match model {
                Model::BlackScholes => "spot",
                Model::Black76 => "forward",
            },
            args.spot.to_string(),
        ),
        ("strike", args.strike.to_string()),
        ("rate", args.rate.to_string()),
        ("dividend yield", args.dividend_yield.to_string()),
        ("expiry (years)", args.expiry_years.to_string()),
    ];
    match (args.vol, args.price) {
        (Some(vol), _) => {
            let g = option.greeks(vol).map_err(failure)?;
            if args.json {
                let json = GreeksJson {
                    price: g.price,
                    delta: g.delta,
                    gamma: g.gamma,
                    vega: g.vega,
                    theta: g.theta,
                    rho: g.rho,
                };
                print_json(&json)
            } else {
                let mut rows = header.to_vec();
                rows.push(("vol", vol.to_string()));
                rows.push(("", String::new()));
                rows.push(("price", readable(g.price)));
                rows.push(("delta", readable(g.delta)));
                rows.push(("gamma", readable(g.gamma)));
                rows.push(("vega (per 1.00 vol)", readable(g.vega)));
                rows.push(("theta (per year)", readable(g.theta)));
                rows.push(("rho (per 1.00 rate)", readable(g.rho)));
                print_table(&rows);
                Ok(())
            }
        }
        (None, Some(price)) => {
            let implied_vol = option.implied_vol(price).map_err(failure)?;
            if args.json {
                print_json(&ImpliedVolJson { implied_vol })
            } else {
                let mut rows = header.to_vec();
                rows.push(("price", price.to_string()));
                rows.push(("", String::new()));
                rows.push(("implied vol", readable(implied_vol)));
                print_table(&rows);
                Ok(())
            }
        }
        // clap requires exactly one of --vol and --price.
        (None, None) => Err(Failure::input("option price: give --vol or --price")),
    }
}

fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let line = serde_json::to_string(value)
        .map_err(|e| Failure::internal(format!("option price: cannot write JSON: {e}")))?;
    println!("{line}");
    Ok(())
}

/// Ten significant digits: fixed point for everyday magnitudes, scientific otherwise.
fn readable(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".to_string()
    } else if (1e-4..1e9).contains(&magnitude) {
        let decimals = (9 - magnitude.log10().floor() as i32).clamp(0, 13) as usize;
        format!("{value:.decimals$}")
    } else {
        format!("{value:.9e}")
    }
}

fn print_table(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in rows {
        if name.is_empty() {
            println!();
        } else {
            println!("{name:<width$}  {value}");
        }
    }
}
