//! Option series handlers: the mark volatility, the settlement price at expiry and the closing of every position
//! at the payoff. The rules (mark, margin, expiry) are in `crate::option`.

use super::*;
use crate::option::{intrinsic, MAX_MARK_VOL};

impl Engine {
    /// The series' configuration, or a rejection naming the market when it is a perp.
    fn option_series(&self, m: MarketIdx) -> Result<crate::perp::OptionSeriesConfig, Rejection> {
        let config = &self.market_configs[m as usize];
        config.option.clone().ok_or_else(|| {
            reject(
                "not_an_option",
                format!("market {} is a perp, not an option series", config.symbol),
            )
        })
    }

    /// Refuses a fill in an option series at or after its expiry.
    pub(super) fn refuse_if_expired(&self, m: MarketIdx, now_s: u64) -> Result<(), Rejection> {
        let config = &self.market_configs[m as usize];
        match &config.option {
            Some(series) if now_s >= series.expiry_s => Err(reject(
                "market_expired",
                format!(
                    "option series {} expired at {}; it no longer trades",
                    config.symbol, series.expiry_s
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `option_vol`: the volatility a series is marked at from now on (a volatility oracle's print).
    pub(super) fn option_vol(&mut self, now_s: u64, symbol: &str, vol: Ratio) -> Applied {
        let m = self.market_idx(symbol)?;
        self.option_series(m)?;
        if !vol.is_positive() || vol > MAX_MARK_VOL {
            return Err(reject(
                "bad_vol",
                format!("vol {vol} must be above 0 and at most {MAX_MARK_VOL}"),
            ));
        }
        if self.markets[m as usize].settlement_price.is_some() {
            return Err(reject(
                "market_expired",
                format!("option series {symbol} has its settlement price: its mark no longer uses a volatility"),
            ));
        }
        let mut market = self.markets[m as usize].clone();
        market.mark_vol = vol;
        self.commit_market(m, market);
        let mut events = vec![Event::OptionVolSet {
            market: symbol.to_string(),
            vol,
        }];
        let holders: Vec<SubAccountId> = self.market_holders[m as usize].iter().copied().collect();
        self.refresh_touched(now_s, &holders, &mut events)?;
        Ok(events)
    }

    /// Called by an oracle print of `asset` (already committed): fixes the settlement price of every series on it
    /// that has expired by the print's publish time and has none yet, if the print is usable for new risk (its
    /// confidence within the asset's `max_confidence`, the price within `max_divergence` of the slow reference);
    /// otherwise a later print will.
    pub(super) fn fix_settlement_prices(
        &mut self,
        now_s: u64,
        asset: AssetIdx,
        price: OraclePrice,
        events: &mut Vec<Event>,
    ) -> NumResult<()> {
        if self.asset_risk(asset, now_s)?.problem.is_some() {
            return Ok(());
        }
        for m in 0..self.markets.len() as MarketIdx {
            if self.market_underlying[m as usize] != asset
                || self.markets[m as usize].settlement_price.is_some()
            {
                continue;
            }
            let Some(series) = &self.market_configs[m as usize].option else {
                continue;
            };
            if price.publish_time_s < series.expiry_s {
                continue;
            }
            let mut market = self.markets[m as usize].clone();
            market.settlement_price = Some(price.price);
            events.push(Event::SettlementPriceFixed {
                market: self.market_configs[m as usize].symbol.clone(),
                settlement_price: price.price,
                payoff: intrinsic(series.kind, series.strike, price.price)?,
                publish_time: price.publish_time_s,
            });
            self.commit_market(m, market);
        }
        Ok(())
    }

    /// `expire_market`: closes every position of an expired series at its payoff. Each position's quote receives
    /// `base * payoff` rounded down (the remainders, exact, go to the market's dust, as funding's do), its base
    /// becomes zero. Permissionless; the unsettled PnL then settles like any other.
    pub(super) fn expire_market(&mut self, now_s: u64, symbol: &str) -> Applied {
        let m = self.market_idx(symbol)?;
        let series = self.option_series(m)?;
        let underlying = self.market_underlying[m as usize];
        let decimals = self.assets[underlying as usize].decimals;
        let (mut market, _) = self.accrued_market(m, now_s)?;
        let Some(settlement) = market.settlement_price else {
            return Err(reject(
                "not_settled",
                format!(
                    "option series {symbol} has no settlement price yet: it needs a {} oracle price published at or after its expiry {} that is usable for new risk (fresh, within max_confidence, within max_divergence of the reference)",
                    self.assets[underlying as usize].symbol, series.expiry_s
                ),
            ));
        };
        let payoff = intrinsic(series.kind, series.strike, settlement)?;
        let d = ballast_num::pow10(decimals as u32 + ballast_num::QUOTE_DECIMALS)?;
        let holders: Vec<SubAccountId> = self.market_holders[m as usize].iter().copied().collect();
        let mut events = Vec::new();
        for &id in &holders {
            let mut position = *self.sub_accounts[id as usize]
                .perp(m)
                .expect("holder index lists holders");
            if position.base.is_zero() {
                continue;
            }
            market.settle_position_funding(&mut position, decimals)?;
            // Booked: floor(base * payoff / D); the remainder base * payoff - booked * D is in [0, D).
            let booked =
                ballast_num::mul_div(position.base.raw(), payoff.raw(), d, Rounding::Floor)?;
            let dust = position
                .base
                .raw()
                .wrapping_mul(payoff.raw())
                .wrapping_sub(booked.wrapping_mul(d));
            debug_assert!((0..d).contains(&dust));
            market.funding_dust = market
                .funding_dust
                .checked_add(dust)
                .ok_or(ballast_num::NumError::Overflow { op: "expiry dust" })?;
            let contracts = position.base;
            position.quote = position.quote.checked_add(Quote::from_raw(booked))?;
            position.base = TokenAmount::ZERO;
            events.push(Event::PositionExpired {
                sub_account: id,
                market: symbol.to_string(),
                contracts: TokenQuantity::from_native(contracts, decimals)?,
                payoff: Quote::from_raw(booked),
                quote_balance: position.quote,
            });
            let keep = !position.quote.is_zero();
            self.commit_perp(id, m, keep.then_some(position));
        }
        market.open_interest = TokenAmount::ZERO;
        self.commit_market(m, market);
        events.push(Event::MarketExpired {
            market: symbol.to_string(),
            settlement_price: settlement,
            payoff,
            positions_closed: events.len() as u64,
        });
        self.refresh_touched(now_s, &holders, &mut events)?;
        Ok(events)
    }
}
