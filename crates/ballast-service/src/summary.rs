//! The `--summary` object: the engine's state at the end of a run or replay, as one JSON line.
//!
//! ```text
//! {"type":"summary","commands":N,"applied":A,"rejected":R,"now":SECONDS,
//!  "sub_accounts":[{"id","owner","margin","balances":{SYMBOL:AMOUNT},
//!                   "perps":[{"market","base","quote","funding_snapshot"}],"health":{...},"below_maintenance"}],
//!  "pools":[{"asset","price","total_supplied","total_borrowed","vault","utilization","borrow_rate",
//!            "supply_rate","borrow_index","supply_index","insurance_fund","insurance_shares",
//!            "bad_debt_covered","socialized_loss","withdrawals_paused_until"}],
//!  "insurance_stakes":[{"sub_account","asset","shares","unstake_shares","unstake_requested_s"}],
//!  "markets":[{"symbol","underlying","oracle_price","open_interest","funding_index","fees_collected",
//!              "insurance_collected","claims_written_off","insurance_paid","socialized_loss",
//!              "withdrawals_paused_until",
//!              "reduce_only","paused","margin_multiplier",
//!              "option" (series only):{"kind","strike","expiry_s","mark_price","mark_vol","settlement_price"}}],
//!  "counterparty_pool":null | {"sub_account","total_shares","value","providers":[{"sub_account","shares"}]},
//!  "treasury":{SYMBOL:AMOUNT},"state_hash":"<hex>"}
//! ```
//!
//! Units: token amounts are whole tokens (the asset's native units divided by 10^decimals), health is in the quote
//! asset (USD), prices are USD per whole token, rates are annual, indices start at 1. A perp position's `base` is
//! whole tokens of the market's underlying (positive long), its `quote` balance USD, its `funding_snapshot` USD per
//! whole base token (the market's funding index when it last settled); a market's `open_interest` is whole tokens
//! (long side), `funding_index` USD per whole base token, and its venue claims (`fees_collected`,
//! `insurance_collected`: the insurance share of liquidation fees) and loss ledger (`claims_written_off`,
//! `insurance_paid`, `socialized_loss`: how its bankruptcies were absorbed, ever) are USD.
//!
//! Insurance shares (a pool's `insurance_shares`, a stake's `shares` and `unstake_shares`) carry the asset's
//! decimals, like its tokens; `insurance_stakes` lists every stake by sub-account, then asset in listing order, and
//! `unstake_requested_s` is 0 when no unstake is pending. Counterparty pool shares carry 6 decimals (the first share
//! was worth 1 USD); `counterparty_pool` is `null` until `open_counterparty_pool`, and its providers are listed by
//! sub-account. The pool's holdings and health are its own entry in `sub_accounts` (owner
//! [`ballast_engine::POOL_OWNER`]); its `value` (USD) is the engine's own valuation, which prices its shares, or
//! `null` while a price it needs is not usable.
//!
//! Every number except counts, ids and times is a decimal string, exact, never a float. Balances are valued at each
//! pool's stored indices (as of its last accrual); health projects borrow interest to `now` and includes unsettled
//! perp PnL and pending funding, as the engine's own checks do. Objects keyed by symbol list the assets in listing
//! order.

use ballast_engine::{
    Engine, Health, MarginKind, MarginSpec, OwnerId, SubAccountId, POOL_SHARE_DECIMALS,
};
use ballast_num::{NumResult, Price, Quote, Ratio, TokenAmount, TokenQuantity};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// What happened to the commands of a run or replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub commands: u64,
    pub applied: u64,
    pub rejected: u64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    #[serde(rename = "type")]
    kind: &'static str,
    commands: u64,
    applied: u64,
    rejected: u64,
    /// Sequencer time of the last applied command (genesis if none), seconds.
    now: u64,
    sub_accounts: Vec<SubAccountSummary>,
    pools: Vec<PoolSummary>,
    /// Every insurance stake, by sub-account then asset.
    insurance_stakes: Vec<StakeSummary>,
    /// Every perp market in listing order.
    markets: Vec<MarketSummary>,
    /// `null` until the pool is opened.
    counterparty_pool: Option<CounterpartyPoolSummary>,
    /// The treasury's claim on each pool (its reserve-factor share of interest), whole tokens.
    treasury: BySymbol<TokenQuantity>,
    state_hash: String,
}

#[derive(Debug, Serialize)]
pub struct SubAccountSummary {
    id: SubAccountId,
    owner: OwnerId,
    /// `"cross"` or `{"isolated":"SYMBOL"}`, as in commands and events.
    margin: MarginSpec,
    /// Non-zero balances, whole tokens; negative is debt.
    balances: BySymbol<TokenQuantity>,
    /// Perp positions, in market order.
    perps: Vec<PerpSummary>,
    /// Health at the three levels, quote (USD); `null` with `health_error` if it cannot be computed.
    health: Option<Health>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_error: Option<String>,
    /// A margin call is open (maintenance health was below zero at the last evaluation).
    below_maintenance: bool,
}

#[derive(Debug, Serialize)]
pub struct PoolSummary {
    pub asset: String,
    /// Latest oracle price, USD per whole token; `null` before the first one.
    pub price: Option<Price>,
    pub total_supplied: TokenQuantity,
    pub total_borrowed: TokenQuantity,
    /// Tokens the pool holds (supplied minus borrowed, plus rounding kept by the venue).
    pub vault: TokenQuantity,
    pub utilization: Ratio,
    /// Annual borrow rate at the current utilization.
    pub borrow_rate: Ratio,
    /// Annual supply rate: `borrow_rate * utilization * (1 - reserve_factor)`.
    pub supply_rate: Ratio,
    pub borrow_index: Ratio,
    pub supply_index: Ratio,
    /// The asset's insurance fund: its deposit in the pool (whole tokens) and the shares outstanding.
    pub insurance_fund: TokenQuantity,
    pub insurance_shares: TokenQuantity,
    /// Ledger: bad debt the insurance fund has paid (for the quote asset, its payouts toward perp bankruptcies
    /// too), and bad debt written off against depositors, ever.
    pub bad_debt_covered: TokenQuantity,
    pub socialized_loss: TokenQuantity,
    /// Withdrawals and borrows are paused until this time (0: never paused).
    pub withdrawals_paused_until: u64,
}

/// One sub-account's stake in one asset's insurance fund.
#[derive(Debug, Serialize)]
pub struct StakeSummary {
    sub_account: SubAccountId,
    asset: String,
    /// Insurance shares held, with the asset's decimals (pending unstake shares included).
    shares: TokenQuantity,
    /// Shares asked to be unstaked (0: none), and when (seconds; 0: no request).
    unstake_shares: TokenQuantity,
    unstake_requested_s: u64,
}

/// The counterparty liquidity pool's header and its providers.
#[derive(Debug, Serialize)]
pub struct CounterpartyPoolSummary {
    /// The pool's own sub-account (also listed in `sub_accounts`).
    sub_account: SubAccountId,
    /// Pool shares outstanding, 6 decimals; the sum of every provider's shares.
    total_shares: TokenQuantity,
    /// The pool's value at oracle prices (USD), as the engine prices its shares; `null` while a price it needs is
    /// not usable.
    value: Option<Quote>,
    /// Every provider holding shares, by sub-account.
    providers: Vec<ProviderSummary>,
}

#[derive(Debug, Serialize)]
pub struct ProviderSummary {
    sub_account: SubAccountId,
    /// Pool shares, 6 decimals.
    shares: TokenQuantity,
}

#[derive(Debug, Serialize)]
pub struct PerpSummary {
    market: String,
    /// Whole tokens of the underlying; positive long.
    base: TokenQuantity,
    /// The position's quote balance, USD: trade value paid or received, fees, and funding settled so far.
    quote: Quote,
    /// The market's funding index when the position last settled funding, USD per whole base token.
    funding_snapshot: Price,
}

#[derive(Debug, Serialize)]
pub struct MarketSummary {
    symbol: String,
    underlying: String,
    /// The underlying's latest oracle price, USD per whole token; `null` before the first one.
    oracle_price: Option<Price>,
    /// Long open interest (equal to short), whole tokens of the underlying.
    open_interest: TokenQuantity,
    /// Cumulative funding, USD per whole base token.
    funding_index: Price,
    /// Fees taken from positions, owed to the venue, USD.
    fees_collected: Quote,
    /// The insurance fund's share of liquidation fees, owed to it, USD.
    insurance_collected: Quote,
    /// Loss ledger, USD, ever: the venue's claims written off against bankrupt positions, what the insurance fund
    /// paid toward them, and what auto-deleveraging socialized (together, every deficit resolved in the market).
    claims_written_off: Quote,
    insurance_paid: Quote,
    socialized_loss: Quote,
    /// After a deleveraging, its traders may not withdraw until this time (0: never paused).
    withdrawals_paused_until: u64,
    reduce_only: bool,
    paused: bool,
    /// The margin multiplier in force at `now` (phased in linearly by `set_market_risk`).
    margin_multiplier: Ratio,
    /// Option series only (absent on a perp).
    #[serde(skip_serializing_if = "Option::is_none")]
    option: Option<OptionSummary>,
}

#[derive(Debug, Serialize)]
pub struct OptionSummary {
    kind: ballast_engine::perp::OptionKind,
    /// USD per whole token.
    strike: Price,
    /// Unix seconds.
    expiry_s: u64,
    /// The series' mark (USD per contract on one whole token), `null` without an underlying price.
    mark_price: Option<Price>,
    /// The volatility it is marked at, per square root of a year.
    mark_vol: Ratio,
    /// Fixed by the first tight oracle price at or after expiry; `null` before.
    settlement_price: Option<Price>,
}

/// `(symbol, value)` pairs written as one JSON object in the given order (a map type would sort the keys).
#[derive(Debug)]
pub struct BySymbol<T>(Vec<(String, T)>);

impl<T: Serialize> Serialize for BySymbol<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (symbol, value) in &self.0 {
            map.serialize_entry(symbol, value)?;
        }
        map.end()
    }
}

impl Summary {
    /// Reads everything from the engine's views; fails only on arithmetic overflow in a pool total.
    pub fn build(engine: &Engine, tally: Tally) -> Result<Summary, String> {
        let sub_accounts = (0..engine.sub_accounts().len())
            .map(|i| sub_account(engine, i as SubAccountId))
            .collect::<Result<Vec<_>, _>>()?;
        let (pools, treasury) = pools(engine)?;
        Ok(Summary {
            kind: "summary",
            commands: tally.commands,
            applied: tally.applied,
            rejected: tally.rejected,
            now: engine.now_s(),
            sub_accounts,
            pools,
            insurance_stakes: insurance_stakes(engine)?,
            markets: markets(engine)?,
            counterparty_pool: counterparty_pool(engine)?,
            treasury,
            state_hash: engine.state_hash(),
        })
    }
}

/// Whole tokens of `asset`.
fn whole(engine: &Engine, asset: u16, amount: TokenAmount) -> NumResult<TokenQuantity> {
    TokenQuantity::from_native(amount, engine.assets()[asset as usize].decimals)
}

fn symbol(engine: &Engine, asset: u16) -> String {
    engine.assets()[asset as usize].symbol.clone()
}

/// One sub-account as the summary shows it (the caller checks that `id` exists).
pub fn sub_account(engine: &Engine, id: SubAccountId) -> Result<SubAccountSummary, String> {
    let markets = engine.market_configs();
    let underlying = engine.market_underlying();
    let sub = &engine.sub_accounts()[id as usize];
    let mut balances = Vec::with_capacity(sub.balances.len());
    for b in &sub.balances {
        let amount = engine
            .balance_native(id, b.asset)
            .and_then(|native| Ok(whole(engine, b.asset, native)?))
            .map_err(|e| format!("sub-account {id} {}: {e}", symbol(engine, b.asset)))?;
        balances.push((symbol(engine, b.asset), amount));
    }
    let mut perps = Vec::with_capacity(sub.perps.len());
    for p in &sub.perps {
        let market = &markets[p.market as usize];
        let base = whole(engine, underlying[p.market as usize], p.base)
            .map_err(|e| format!("sub-account {id} {}: {e}", market.symbol))?;
        perps.push(PerpSummary {
            market: market.symbol.clone(),
            base,
            quote: p.quote,
            funding_snapshot: p.funding_snapshot,
        });
    }
    let (health, health_error) = match engine.health(id) {
        Ok(h) => (Some(h), None),
        Err(rejection) => (None, Some(rejection.to_string())),
    };
    Ok(SubAccountSummary {
        id,
        owner: sub.owner,
        margin: match sub.margin {
            MarginKind::Cross => MarginSpec::Cross,
            MarginKind::Portfolio => MarginSpec::Portfolio,
            MarginKind::Isolated(asset) => MarginSpec::Isolated(symbol(engine, asset)),
        },
        balances: BySymbol(balances),
        perps,
        health,
        health_error,
        below_maintenance: sub.below_maintenance,
    })
}

/// Every lending pool, and the treasury's holding in each.
pub fn pools(engine: &Engine) -> Result<(Vec<PoolSummary>, BySymbol<TokenQuantity>), String> {
    let assets = engine.assets();
    let mut pools = Vec::with_capacity(assets.len());
    let mut treasury = Vec::with_capacity(assets.len());
    for (i, config) in assets.iter().enumerate() {
        let asset = i as u16;
        let whole = |a: TokenAmount| whole(engine, asset, a);
        let pool = engine.pool(asset);
        let context = |e: ballast_num::NumError| format!("pool {}: {e}", config.symbol);
        let utilization = pool.utilization().map_err(context)?;
        let borrow_rate = config.interest.borrow_rate(utilization);
        pools.push(PoolSummary {
            asset: config.symbol.clone(),
            price: engine.oracle(asset).map(|o| o.price),
            total_supplied: pool.total_supplied().and_then(whole).map_err(context)?,
            total_borrowed: pool.total_borrowed().and_then(whole).map_err(context)?,
            vault: whole(pool.vault).map_err(context)?,
            utilization,
            borrow_rate,
            supply_rate: pool
                .supply_rate(borrow_rate, config.reserve_factor)
                .map_err(context)?,
            borrow_index: pool.borrow_index,
            supply_index: pool.supply_index,
            insurance_fund: pool
                .deposit_native(pool.insurance_scaled)
                .and_then(whole)
                .map_err(context)?,
            insurance_shares: whole(TokenAmount::from_raw(pool.insurance_shares))
                .map_err(context)?,
            bad_debt_covered: whole(pool.bad_debt_covered).map_err(context)?,
            socialized_loss: whole(pool.socialized_loss).map_err(context)?,
            withdrawals_paused_until: pool.withdrawals_paused_until_s,
        });
        let held = pool.treasury_native().and_then(whole).map_err(context)?;
        treasury.push((config.symbol.clone(), held));
    }
    Ok((pools, BySymbol(treasury)))
}

/// Every market, perps and option series.
pub fn markets(engine: &Engine) -> Result<Vec<MarketSummary>, String> {
    let markets = engine.market_configs();
    let underlying = engine.market_underlying();
    let mut out = Vec::with_capacity(markets.len());
    for (m, (config, state)) in markets.iter().zip(engine.markets()).enumerate() {
        let asset = underlying[m];
        let context = |e: ballast_num::NumError| format!("market {}: {e}", config.symbol);
        out.push(MarketSummary {
            symbol: config.symbol.clone(),
            underlying: config.underlying.clone(),
            oracle_price: engine.oracle(asset).map(|o| o.price),
            open_interest: whole(engine, asset, state.open_interest).map_err(context)?,
            funding_index: state.funding_index,
            fees_collected: state.fees_collected,
            insurance_collected: state.insurance_collected,
            claims_written_off: state.claims_written_off,
            insurance_paid: state.insurance_paid,
            socialized_loss: state.socialized_loss,
            withdrawals_paused_until: state.withdrawals_paused_until_s,
            reduce_only: state.reduce_only,
            paused: state.paused,
            margin_multiplier: state.margin_multiplier(engine.now_s()).map_err(context)?,
            option: config.option.as_ref().map(|o| OptionSummary {
                kind: o.kind,
                strike: o.strike,
                expiry_s: o.expiry_s,
                mark_price: engine.market_mark(m as u16),
                mark_vol: state.mark_vol,
                settlement_price: state.settlement_price,
            }),
        });
    }
    Ok(out)
}

/// Every insurance fund stake, by sub-account then asset.
pub fn insurance_stakes(engine: &Engine) -> Result<Vec<StakeSummary>, String> {
    let mut out = Vec::with_capacity(engine.stakes().len());
    for (&(id, asset), stake) in engine.stakes() {
        let context = |e: ballast_num::NumError| {
            format!(
                "insurance stake of sub-account {id} in {}: {e}",
                symbol(engine, asset)
            )
        };
        out.push(StakeSummary {
            sub_account: id,
            asset: symbol(engine, asset),
            shares: whole(engine, asset, TokenAmount::from_raw(stake.shares)).map_err(context)?,
            unstake_shares: whole(engine, asset, TokenAmount::from_raw(stake.unstake_shares))
                .map_err(context)?,
            unstake_requested_s: stake.unstake_requested_s,
        });
    }
    Ok(out)
}

/// The counterparty pool, once opened.
pub fn counterparty_pool(engine: &Engine) -> Result<Option<CounterpartyPoolSummary>, String> {
    let lp = engine.lp_pool();
    let Some(sub_account) = lp.sub_account else {
        return Ok(None);
    };
    let shares = |units: i128| {
        TokenQuantity::from_native(TokenAmount::from_raw(units), POOL_SHARE_DECIMALS)
            .map_err(|e| format!("counterparty pool shares: {e}"))
    };
    let mut providers = Vec::with_capacity(engine.lp_shares().len());
    for (&id, &units) in engine.lp_shares() {
        providers.push(ProviderSummary {
            sub_account: id,
            shares: shares(units)?,
        });
    }
    Ok(Some(CounterpartyPoolSummary {
        sub_account,
        total_shares: shares(lp.total_shares)?,
        value: engine.counterparty_pool_value(),
        providers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_engine::{Command, ProtocolConfig};

    const CONFIG: &str = include_str!("../../../examples/protocol.toml");

    #[test]
    fn empty_engine_summary_lists_every_pool_and_treasury_in_listing_order() {
        let config = ProtocolConfig::from_toml("protocol.toml", CONFIG).unwrap();
        let engine = Engine::new(config, 100);
        let summary = Summary::build(&engine, Tally::default()).unwrap();
        let json = serde_json::to_string(&summary).unwrap();
        assert!(json.starts_with(r#"{"type":"summary","commands":0,"applied":0,"rejected":0,"now":100,"sub_accounts":[],"pools":[{"asset":"USDC","price":null,"total_supplied":"0""#), "{json}");
        assert!(
            json.contains(r#""treasury":{"USDC":"0","BTC":"0","ETH":"0","SOL":"0","MNGO":"0"}"#),
            "{json}"
        );
        assert!(
            json.contains(&format!(r#""state_hash":"{}""#, engine.state_hash())),
            "{json}"
        );
        assert!(
            json.contains(r#""insurance_stakes":[],"markets":["#),
            "{json}"
        );
        assert!(
            json.contains(r#""counterparty_pool":null,"treasury":"#),
            "{json}"
        );
    }

    #[test]
    fn balances_are_whole_tokens_and_margin_matches_the_command_shape() {
        let config = ProtocolConfig::from_toml("protocol.toml", CONFIG).unwrap();
        let mut engine = Engine::new(config, 0);
        for line in [
            r#"{"timestamp":1,"type":"create_account","owner":5}"#,
            r#"{"timestamp":1,"type":"open_sub_account","owner":5,"margin":{"isolated":"MNGO"}}"#,
            r#"{"timestamp":2,"type":"deposit","sub_account":0,"asset":"MNGO","amount":"12.5"}"#,
        ] {
            engine.apply(&Command::from_json(line).unwrap()).unwrap();
        }
        let summary = Summary::build(&engine, Tally::default()).unwrap();
        let json = serde_json::to_string(&summary.sub_accounts[0]).unwrap();
        assert!(
            json.contains(r#""margin":{"isolated":"MNGO"},"balances":{"MNGO":"12.5"},"perps":[]"#),
            "{json}"
        );
        assert!(
            json.contains(r#""health":{"initial":"0","liquidation_end":"0","maintenance":"0"}"#),
            "{json}"
        );
    }

    #[test]
    fn perp_positions_are_whole_base_tokens_and_markets_follow_listing_order() {
        let config = ProtocolConfig::from_toml("protocol.toml", CONFIG).unwrap();
        let mut engine = Engine::new(config, 0);
        for line in [
            r#"{"timestamp":1,"type":"create_account","owner":1}"#,
            r#"{"timestamp":1,"type":"open_sub_account","owner":1,"margin":"cross"}"#,
            r#"{"timestamp":1,"type":"open_sub_account","owner":1,"margin":"cross"}"#,
            r#"{"timestamp":1,"type":"oracle_price","asset":"USDC","price":"1","confidence":"0","publish_time":1}"#,
            r#"{"timestamp":1,"type":"oracle_price","asset":"ETH","price":"3000","confidence":"1","publish_time":1}"#,
            r#"{"timestamp":2,"type":"deposit","sub_account":0,"asset":"USDC","amount":"1000"}"#,
            r#"{"timestamp":2,"type":"deposit","sub_account":1,"asset":"USDC","amount":"1000"}"#,
            r#"{"timestamp":3,"type":"perp_fill","market":"ETH-PERP","taker":0,"maker":1,"side":"sell","size":"0.25","price":"3000"}"#,
        ] {
            engine.apply(&Command::from_json(line).unwrap()).unwrap();
        }
        let summary = Summary::build(&engine, Tally::default()).unwrap();
        let json = serde_json::to_string(&summary.sub_accounts[0]).unwrap();
        // 0.25 ETH sold at 3000: +750 USD, less the 0.05% taker fee (0.375).
        assert!(
            json.contains(r#""perps":[{"market":"ETH-PERP","base":"-0.25","quote":"749.625","funding_snapshot":"0"}]"#),
            "{json}"
        );
        let json = serde_json::to_string(&summary.markets).unwrap();
        assert!(
            json.starts_with(concat!(
                r#"[{"symbol":"BTC-PERP","underlying":"BTC","oracle_price":null,"open_interest":"0","#,
                r#""funding_index":"0","fees_collected":"0","insurance_collected":"0","#,
                r#""claims_written_off":"0","insurance_paid":"0","socialized_loss":"0","#,
                r#""withdrawals_paused_until":0,"#,
                r#""reduce_only":false,"paused":false,"#,
                r#""margin_multiplier":"1"},"#,
                r#"{"symbol":"ETH-PERP","underlying":"ETH","oracle_price":"3000","open_interest":"0.25","#,
                r#""funding_index":"0","fees_collected":"0.525","insurance_collected":"0","#,
                r#""claims_written_off":"0","insurance_paid":"0","socialized_loss":"0","#,
                r#""withdrawals_paused_until":0,"#,
                r#""reduce_only":false,"paused":false,"#,
                r#""margin_multiplier":"1"}"#
            )),
            "{json}"
        );
    }
}
