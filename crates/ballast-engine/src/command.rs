//! The engine's whole input language ([`Command`]) and output language ([`Event`], [`Rejection`]).
//!
//! Every command carries the timestamp the sequencer assigned (seconds); the engine never reads a clock.
//! Amounts are whole tokens written as decimal strings ([`TokenQuantity`], `"1.5"`), converted to native units with
//! the asset's decimals, and refused if they would need rounding. `docs/commands.md` documents the JSON shapes.

use crate::config::AssetConfig;
use crate::health::Health;
use ballast_num::{Price, Quote, Ratio, TokenQuantity};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies an account owner (a key in later issues).
pub type OwnerId = u64;
/// Identifies a sub-account; assigned by the engine in opening order, from 0.
pub type SubAccountId = u32;

/// How a sub-account is margined, as commands and events name it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MarginSpec {
    /// All balances share one collateral pool.
    Cross,
    /// Bound to one asset: holds only that asset and the quote asset; margined alone.
    Isolated(String),
    /// Cross, but margined by the worst loss of the whole book over the `[portfolio_margin]` scenario grid
    /// (`crate::portfolio`) instead of weights and ratios.
    Portfolio,
}

/// One command, stamped by the sequencer.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Command {
    /// Sequencer time, seconds. Never earlier than the previous command's.
    pub timestamp: u64,
    #[serde(flatten)]
    pub kind: CommandKind,
}

/// What a command asks for.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandKind {
    /// Registers an owner.
    CreateAccount { owner: OwnerId },
    /// Opens a sub-account for an owner.
    OpenSubAccount { owner: OwnerId, margin: MarginSpec },
    /// Tokens enter from outside: repays debt in that asset first, the rest is deposited.
    Deposit {
        sub_account: SubAccountId,
        asset: String,
        amount: TokenQuantity,
    },
    /// Tokens leave: from the deposit first, then (unless `reduce_only`) borrowed, if health allows.
    Withdraw {
        sub_account: SubAccountId,
        asset: String,
        amount: TokenQuantity,
        #[serde(default)]
        reduce_only: bool,
    },
    /// Moves a deposit between two sub-accounts of the same owner (never borrows).
    Transfer {
        from: SubAccountId,
        to: SubAccountId,
        asset: String,
        amount: TokenQuantity,
    },
    /// A new oracle observation.
    OraclePrice {
        asset: String,
        price: Price,
        confidence: Price,
        publish_time: u64,
    },
    /// Accrues interest on one pool, or on all when `asset` is absent.
    AccrueInterest {
        #[serde(default)]
        asset: Option<String>,
    },
    /// Lists a new asset (administrative).
    ListAsset { asset: Box<AssetConfig> },
    /// A perp trade matched by the venue's order book: the taker bought (`side` = buy) or sold `size` whole base
    /// tokens to the maker at `price`.
    PerpFill {
        market: String,
        taker: SubAccountId,
        maker: SubAccountId,
        side: Side,
        size: TokenQuantity,
        price: Price,
    },
    /// A funding premium sample: the venue's mark price for the market (from its order book) against the oracle.
    UpdateFunding { market: String, mark_price: Price },
    /// Protocol-level deleveraging switches for one market (administrative; governance later). Absent fields keep
    /// their value. A new margin multiplier is phased in linearly over `phase_s` seconds from the one in force.
    SetMarketRisk {
        market: String,
        #[serde(default)]
        reduce_only: Option<bool>,
        #[serde(default)]
        paused: Option<bool>,
        #[serde(default)]
        margin_multiplier: Option<Ratio>,
        #[serde(default)]
        phase_s: u64,
    },
    /// A volatility oracle's print: the volatility an option series is marked at from now on (per square root of a
    /// year, e.g. `"0.65"`).
    OptionVol { market: String, vol: Ratio },
    /// Closes every position of an option series whose settlement price is fixed, at the payoff (permissionless).
    ExpireMarket { market: String },
    /// Settles unsettled PnL between a winning and a losing position in a market, in quote-asset tokens.
    SettlePnl {
        market: String,
        winner: SubAccountId,
        loser: SubAccountId,
    },
    /// Settles a losing position against the venue's fee and insurance claims in the market.
    SettleVenueClaims { market: String, loser: SubAccountId },
    /// Moves part of a deposit into the asset's insurance fund for shares.
    StakeInsurance {
        sub_account: SubAccountId,
        asset: String,
        amount: TokenQuantity,
    },
    /// Starts the cooldown for unstaking `shares` (share units carry the asset's decimals).
    RequestUnstake {
        sub_account: SubAccountId,
        asset: String,
        shares: TokenQuantity,
    },
    /// After the cooldown, turns the requested shares back into a deposit at the fund's current value.
    Unstake {
        sub_account: SubAccountId,
        asset: String,
    },
    /// Runs the loss waterfall for a sub-account with no collateral left: its perp deficits, then its debts.
    ResolveBankruptcy { target: SubAccountId },
    /// Opens the counterparty liquidity pool: a venue-owned sub-account that takes the other side of pool trades and
    /// backstops liquidations, owned by liquidity providers through shares (administrative; once).
    OpenCounterpartyPool {},
    /// A liquidity provider moves `amount` of the quote asset from its deposit into the pool, for shares.
    PoolDeposit {
        sub_account: SubAccountId,
        amount: TokenQuantity,
    },
    /// A liquidity provider redeems `shares` for quote-asset tokens at the pool's value.
    PoolWithdraw {
        sub_account: SubAccountId,
        shares: TokenQuantity,
    },
    /// A trade against the pool at the oracle price plus size-dependent price impact; `side` is the trader's.
    PoolTrade {
        market: String,
        sub_account: SubAccountId,
        side: Side,
        size: TokenQuantity,
    },
    /// Anyone may ask the pool to liquidate a sub-account below maintenance: it takes over the position (at the
    /// oracle price less the liquidation fee) or collateral like a registered liquidator would.
    PoolLiquidate { target: SubAccountId },
    /// Allows a sub-account to liquidate others (administrative; governance later).
    RegisterLiquidator { sub_account: SubAccountId },
    /// A registered liquidator takes over as much of a target's risk (below maintenance) as brings it back to
    /// liquidation-end health, and no more.
    Liquidate {
        liquidator: SubAccountId,
        target: SubAccountId,
    },
}

/// The taker's side of a fill.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

impl Command {
    /// Parses one command from JSON, rejecting unknown fields and floats, with a message that names the problem.
    pub fn from_json(text: &str) -> Result<Command, String> {
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let object = value
            .as_object_mut()
            .ok_or("a command must be a JSON object")?;
        let timestamp = object
            .remove("timestamp")
            .ok_or("missing field `timestamp`")?;
        let timestamp = timestamp
            .as_u64()
            .ok_or("`timestamp` must be a non-negative integer (seconds)")?;
        let fields = value.clone();
        let kind: CommandKind = serde_json::from_value(value)
            .map_err(|e| locate_field_error(&fields).unwrap_or(e.to_string()))?;
        Ok(Command { timestamp, kind })
    }

    /// The canonical JSON of this command (field order fixed by the types).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("commands always serialize")
    }
}

/// Names the field behind a failed parse when it is one of the decimal fields (the tagged enum's own error loses
/// the field name): `field `amount`: 'abc' is not a decimal number`.
fn locate_field_error(fields: &serde_json::Value) -> Option<String> {
    let object = fields.as_object()?;
    for (name, value) in object {
        let error = match name.as_str() {
            "amount" | "shares" => serde_json::from_value::<TokenQuantity>(value.clone()).err(),
            "size" => serde_json::from_value::<TokenQuantity>(value.clone()).err(),
            "price" | "confidence" | "mark_price" => {
                serde_json::from_value::<Price>(value.clone()).err()
            }
            _ => None,
        };
        if let Some(error) = error {
            return Some(format!("field `{name}`: {error}"));
        }
    }
    None
}

/// What an applied command changed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    AccountCreated {
        owner: OwnerId,
    },
    SubAccountOpened {
        owner: OwnerId,
        sub_account: SubAccountId,
        margin: MarginSpec,
    },
    Deposited {
        sub_account: SubAccountId,
        asset: String,
        amount: TokenQuantity,
        /// Part of `amount` that repaid debt.
        repaid: TokenQuantity,
        /// The sub-account's balance afterwards (negative: debt).
        balance: TokenQuantity,
    },
    Withdrawn {
        sub_account: SubAccountId,
        asset: String,
        amount: TokenQuantity,
        /// Part of `amount` that was borrowed.
        borrowed: TokenQuantity,
        balance: TokenQuantity,
        health: Health,
    },
    Transferred {
        from: SubAccountId,
        to: SubAccountId,
        asset: String,
        amount: TokenQuantity,
    },
    PriceUpdated {
        asset: String,
        price: Price,
        confidence: Price,
        reference_price: Price,
        publish_time: u64,
    },
    InterestAccrued {
        asset: String,
        elapsed_s: u64,
        /// Annual borrow rate over the period.
        borrow_rate: Ratio,
        borrow_index: Ratio,
        supply_index: Ratio,
        /// Tokens credited to the treasury by this accrual.
        to_treasury: TokenQuantity,
    },
    /// Maintenance health crossed below zero: the sub-account may be liquidated.
    MarginCall {
        sub_account: SubAccountId,
        owner: OwnerId,
        maintenance_health: Quote,
    },
    /// Maintenance health crossed back to zero or above.
    MarginRecovered {
        sub_account: SubAccountId,
        owner: OwnerId,
        maintenance_health: Quote,
    },
    AssetListed {
        asset: String,
        index: u16,
    },
    PerpFilled {
        market: String,
        taker: SubAccountId,
        maker: SubAccountId,
        side: Side,
        size: TokenQuantity,
        price: Price,
        taker_fee: Quote,
        maker_fee: Quote,
        /// Positions afterwards (base in whole tokens, quote balance in USD).
        taker_base: TokenQuantity,
        maker_base: TokenQuantity,
        /// Long open interest afterwards, whole tokens.
        open_interest: TokenQuantity,
    },
    /// A premium sample: funding so far accrued at the previous rate, and `rate` is in force from now on.
    FundingUpdated {
        market: String,
        /// The clamped premium per funding interval, in force from this sample for one interval.
        rate: Ratio,
        /// Seconds accrued at the previous rate by this sample (0 if something touched the market this second).
        elapsed_s: u64,
        /// The index after that accrual.
        funding_index: Price,
    },
    /// Unsettled perp PnL became quote-asset tokens: `amount` moved from the loser's balance to the winner's.
    PnlSettled {
        market: String,
        winner: SubAccountId,
        loser: SubAccountId,
        amount: TokenQuantity,
    },
    /// The venue's claims in a market became quote-asset deposits of the treasury and the insurance fund.
    VenueClaimsSettled {
        market: String,
        loser: SubAccountId,
        to_treasury: TokenQuantity,
        to_insurance: TokenQuantity,
    },
    InsuranceStaked {
        sub_account: SubAccountId,
        asset: String,
        amount: TokenQuantity,
        shares: TokenQuantity,
    },
    UnstakeRequested {
        sub_account: SubAccountId,
        asset: String,
        shares: TokenQuantity,
        available_at: u64,
    },
    InsuranceUnstaked {
        sub_account: SubAccountId,
        asset: String,
        shares: TokenQuantity,
        amount: TokenQuantity,
    },
    /// A bankrupt sub-account's debt in one asset: what the insurance fund paid and what was socialized (written
    /// off against the pool's depositors by lowering the supply index).
    BankruptcyResolved {
        target: SubAccountId,
        asset: String,
        debt: TokenQuantity,
        covered_by_insurance: TokenQuantity,
        socialized: TokenQuantity,
        supply_index_before: Ratio,
        supply_index_after: Ratio,
    },
    /// A bankrupt sub-account's position in a perp market was resolved through the loss waterfall. `deficit` is
    /// its negative value at the oracle (funding settled); `from_venue_claims + covered_by_insurance + socialized`
    /// equals it (insurance in quote-asset tokens, at face value). An open position was closed by auto-deleveraging
    /// at `bankruptcy_price`, where its value is exactly zero after the earlier steps.
    PerpBankruptcyResolved {
        target: SubAccountId,
        market: String,
        deficit: Quote,
        from_venue_claims: Quote,
        covered_by_insurance: TokenQuantity,
        socialized: Quote,
        bankruptcy_price: Option<Price>,
    },
    /// An insolvent sub-account's deposit worth less than one USD at the oracle (not worth a liquidation) went to its
    /// asset's insurance fund as `resolve_bankruptcy` began.
    DustSwept {
        target: SubAccountId,
        asset: String,
        amount: TokenQuantity,
    },
    /// An insolvent sub-account's insurance stake or counterparty-pool shares were burned: their value stays with
    /// the fund's or the pool's other holders.
    SharesForfeited {
        target: SubAccountId,
        fund: String,
        shares: TokenQuantity,
    },
    /// An insolvent sub-account's closed, profitable position (a claim on its market's losers) went to the
    /// insurance fund's claim in that market; the fund may pay as much more of the sub-account's deficits.
    PerpClaimForfeited {
        target: SubAccountId,
        market: String,
        amount: Quote,
    },
    /// The insurance fund paid part of a bankrupt position's deficit straight to a winning position in its market:
    /// `amount` quote-asset tokens into the winner's balance, its unsettled PnL down by as much.
    InsurancePaidWinner {
        market: String,
        bankrupt: SubAccountId,
        winner: SubAccountId,
        amount: TokenQuantity,
    },
    /// Auto-deleveraging: a ranked position absorbed part of a bankrupt position's deficit. With `base` non-zero it
    /// was closed by that much (its change, whole tokens) at the bankruptcy price; with `base` zero (the bankrupt
    /// position was already flat) its unsettled profit was cut. `value_lost` is the cost at the oracle price.
    Deleveraged {
        market: String,
        bankrupt: SubAccountId,
        counterparty: SubAccountId,
        rank: u32,
        base: TokenQuantity,
        value_lost: Quote,
    },
    /// An insolvent sub-account's profitable long option was closed at the series' mark against a short position
    /// of the series (ranked as for ADL, but nobody loses: no withdrawal pause). `base` (whole contracts, positive)
    /// is the short's change, `price` the mark (USD per whole contract) and `amount` (USD, `base * price` rounded
    /// down) what moved from the short's quote balance to the bankrupt position's.
    ClosedAtMark {
        market: String,
        bankrupt: SubAccountId,
        counterparty: SubAccountId,
        rank: u32,
        base: TokenQuantity,
        price: Price,
        amount: Quote,
    },
    CounterpartyPoolOpened {
        sub_account: SubAccountId,
    },
    /// `shares` (6 decimals; the first share is worth 1 USD) for `amount` quote-asset tokens, the pool valued at
    /// `pool_value` before the deposit.
    PoolDeposited {
        sub_account: SubAccountId,
        amount: TokenQuantity,
        shares: TokenQuantity,
        pool_value: Quote,
    },
    PoolWithdrawn {
        sub_account: SubAccountId,
        shares: TokenQuantity,
        amount: TokenQuantity,
        pool_value: Quote,
    },
    /// A trade against the pool (the fill itself follows as `perp_filled`, the pool as maker): `impact` is the
    /// price impact the trader paid over (buy) or under (sell) the oracle price.
    PoolTraded {
        market: String,
        sub_account: SubAccountId,
        side: Side,
        size: TokenQuantity,
        oracle_price: Price,
        price: Price,
        impact: Ratio,
    },
    LiquidatorRegistered {
        sub_account: SubAccountId,
    },
    /// A liquidator took over part (or all) of a target's perp position.
    PerpLiquidated {
        liquidator: SubAccountId,
        target: SubAccountId,
        market: String,
        /// Base moved from the target to the liquidator, whole tokens (negative: the target was short).
        base: TokenQuantity,
        oracle_price: Price,
        /// The price the liquidator paid: the oracle less the liquidation fee (more, for a short).
        price: Price,
        /// The liquidation fee (the discount) in USD, and the part of it the liquidator paid to the insurance fund.
        fee: Quote,
        insurance_fee: Quote,
        /// The step took the whole position (because that was the least that restores liquidation-end health, or
        /// because a partial step could not improve it).
        full_close: bool,
        health_before: Health,
        health_after: Health,
    },
    /// A liquidator repaid part of a target's debt and received its collateral at a discount.
    SpotLiquidated {
        liquidator: SubAccountId,
        target: SubAccountId,
        debt_asset: String,
        /// Debt repaid by the liquidator, whole tokens.
        repaid: TokenQuantity,
        collateral_asset: String,
        /// Collateral taken from the target, whole tokens; `to_insurance` of it went to the insurance fund.
        seized: TokenQuantity,
        to_insurance: TokenQuantity,
        /// The repayment took its maximum: all the debt, all the collateral covers, or the step limit.
        full_close: bool,
        health_before: Health,
        health_after: Health,
    },
    /// A liquidator took over the same share of every holding of a portfolio-margined sub-account: balances at
    /// the oracle, positions at their marks, paying `paid` quote-asset tokens (whole tokens; negative: the target
    /// paid) = `value` less `fee`, and `insurance_fee` of the fee to the insurance fund.
    PortfolioLiquidated {
        liquidator: SubAccountId,
        target: SubAccountId,
        /// The share taken, in millionths.
        fraction: Ratio,
        balances: Vec<SliceBalance>,
        positions: Vec<SlicePosition>,
        /// The balances taken, at the oracle (deposits rounded down, debts up), USD.
        value: Quote,
        /// USD: the fee the target paid, and the insurance fund's share of it.
        fee: Quote,
        insurance_fee: Quote,
        paid: TokenQuantity,
        /// The slice took everything (`fraction` 1).
        full_close: bool,
        health_before: Health,
        health_after: Health,
    },
    MarketRiskSet {
        market: String,
        reduce_only: bool,
        paused: bool,
        margin_multiplier: Ratio,
        phase_s: u64,
    },
    /// An option series is marked at a new volatility.
    OptionVolSet {
        market: String,
        vol: Ratio,
    },
    /// The first tight oracle price of the underlying published at or after an option series' expiry fixed its
    /// settlement price; `payoff` is one contract's (USD per whole token).
    SettlementPriceFixed {
        market: String,
        settlement_price: Price,
        payoff: Price,
        publish_time: u64,
    },
    /// A position in an expired series was closed at the payoff: `payoff` (the position's, micro-USD precision) went to
    /// its quote balance, now `quote_balance`.
    PositionExpired {
        sub_account: SubAccountId,
        market: String,
        contracts: TokenQuantity,
        payoff: Quote,
        quote_balance: Quote,
    },
    /// Every position of an expired series is closed.
    MarketExpired {
        market: String,
        settlement_price: Price,
        payoff: Price,
        positions_closed: u64,
    },
}

/// A balance a portfolio liquidation moved: whole tokens of `asset`, positive for a deposit, negative for a debt.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SliceBalance {
    pub asset: String,
    pub amount: TokenQuantity,
}

/// A position a portfolio liquidation moved at its mark: the target's change in `base` is minus this (whole tokens
/// or contracts; positive: the liquidator took a long), at `mark` USD per whole token.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SlicePosition {
    pub market: String,
    pub base: TokenQuantity,
    pub mark: Price,
}

/// Why a command was refused. The state is exactly as before.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Rejection {
    /// Stable machine-readable reason (`insufficient_health`, `stale_oracle`, ...).
    pub code: &'static str,
    /// What exactly was wrong, for people.
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

impl From<ballast_num::NumError> for Rejection {
    fn from(e: ballast_num::NumError) -> Rejection {
        Rejection::new("arithmetic", e.to_string())
    }
}
