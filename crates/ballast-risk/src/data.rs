//! Price history: loading OHLCV CSV files, gaps, alignment and returns.
//!
//! A [`PriceSeries`] is one asset's closes (and open, high, low when the file has them) at strictly increasing UTC
//! timestamps on a regular grid of `interval_s` seconds. Missing grid points are **gaps**: they are kept as data
//! ([`PriceSeries::gaps`]) and never bridged, so a return is only ever computed between samples that are
//! contiguous on the grid.
//!
//! Accepted files (the formats of `../shared/data/`, see its README; columns are found by name, in any order):
//!
//! | time column | format | example |
//! |---|---|---|
//! | `datetime_utc` | `YYYY-MM-DDTHH:MM:SSZ` | `2020-03-01T00:00:00Z` (hourly Binance, Gemini) |
//! | `date` | `YYYY-MM-DD`, read as 00:00 UTC | `2017-08-17` (daily Binance, Yahoo) |
//! | `approx_close_date_utc` | `YYYY-MM-DD` | Coin Metrics reference rate |
//!
//! The price is the `close` column, or `reference_rate_usd` (Coin Metrics). Bars are stamped with their **open**
//! time. Coin Metrics' row dated `cm_time = D` is the rate at 00:00 UTC on D, about the close of the daily bar that
//! opened on D-1; we stamp it with `approx_close_date_utc` (= D-1) so that it aligns with exchange daily bars. When a
//! file has `open`, `high` and `low` they are kept; they are checked to be positive numbers, not for consistency with
//! each other. When it has `open_time_ms` (Binance hourly), it must agree with `datetime_utc`.
//!
//! Errors name the file (its last path component), the line (the header is line 1) and the rule broken:
//! `btc.csv line 4312: close is not a number`. Nothing here panics on bad input.
//!
//! Sampling interval: the smallest difference between consecutive timestamps. Every difference must be a whole
//! multiple of it; a difference of `m` intervals (`m > 1`) is a gap of `m - 1` missing samples. Duplicated and
//! out-of-order timestamps are errors, not gaps.
//!
//! I/O: only [`load_csv`] touches the file system; [`parse_csv`] does the work on text already in memory.

use std::fmt;
use std::path::Path;

#[cfg(test)]
mod tests;

/// The most data rows one file may hold (about 1,100 years of hourly bars).
pub const ROWS_MAX: usize = 10_000_000;

/// Seconds in one day.
const DAY_S: i64 = 86_400;

/// A bad input file: which file, which line (1-based, the header is line 1; `None` for the file as a whole), and the
/// rule broken. Displays as `btc.csv line 4312: close is not a number`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub file: String,
    pub line: Option<usize>,
    pub rule: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {}: {}", self.file, line, self.rule),
            None => write!(f, "{}: {}", self.file, self.rule),
        }
    }
}

impl std::error::Error for DataError {}

/// Open, high and low of one bar, in quote units per unit of the asset (the close lives in [`PriceSeries::closes`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenHighLow {
    pub open: f64,
    pub high: f64,
    pub low: f64,
}

/// A run of missing samples: `n_missing` grid points strictly between the samples at `after_utc_s` and
/// `before_utc_s` (`before_utc_s - after_utc_s = (n_missing + 1) * interval_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub after_utc_s: i64,
    pub before_utc_s: i64,
    pub n_missing: i64,
}

/// One asset's price history on a regular grid. Invariants (checked by the constructor): at least two samples,
/// timestamps strictly increasing and all on the grid `times_utc_s[0] + j * interval_s`, closes finite and > 0.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceSeries {
    name: String,
    times_utc_s: Vec<i64>,
    closes: Vec<f64>,
    open_high_low: Option<Vec<OpenHighLow>>,
    interval_s: i64,
    gaps: Vec<Gap>,
}

/// Simple (`P1/P0 - 1`) or logarithmic (`ln(P1/P0)`) return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnKind {
    Simple,
    Log,
}

/// A return over `k` contiguous samples, stamped with the timestamp of its **end** sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Return {
    pub end_utc_s: i64,
    pub value: f64,
}

impl PriceSeries {
    /// Builds a series from samples, detecting the interval and the gaps. `name` is used in error messages (as the
    /// file name). Errors on fewer than two samples, a non-increasing timestamp, a timestamp off the grid, a close that
    /// is not finite and positive, or `open_high_low` of another length than `times_utc_s`.
    pub fn new(
        name: &str,
        times_utc_s: Vec<i64>,
        closes: Vec<f64>,
        open_high_low: Option<Vec<OpenHighLow>>,
    ) -> Result<PriceSeries, DataError> {
        PriceSeries::build(name, times_utc_s, closes, open_high_low).map_err(|(sample, rule)| {
            DataError {
                file: name.to_string(),
                line: None,
                rule: match sample {
                    Some(i) => format!("sample {i}: {rule}"),
                    None => rule,
                },
            }
        })
    }

    /// [`PriceSeries::new`], with errors as (index of the offending sample if one is, rule broken), so that
    /// [`parse_csv`] can name the line.
    fn build(
        name: &str,
        times_utc_s: Vec<i64>,
        closes: Vec<f64>,
        open_high_low: Option<Vec<OpenHighLow>>,
    ) -> Result<PriceSeries, (Option<usize>, String)> {
        if times_utc_s.len() != closes.len()
            || open_high_low
                .as_ref()
                .is_some_and(|v| v.len() != closes.len())
        {
            return Err((
                None,
                "times, closes and open/high/low differ in length".to_string(),
            ));
        }
        if times_utc_s.len() < 2 {
            return Err((
                None,
                format!(
                    "{} samples: at least 2 are needed to detect the sampling interval",
                    times_utc_s.len()
                ),
            ));
        }
        if let Some(i) = closes.iter().position(|c| !(c.is_finite() && *c > 0.0)) {
            return Err((Some(i), "close must be finite and > 0".to_string()));
        }
        let mut interval_s = i64::MAX;
        for (i, pair) in times_utc_s.windows(2).enumerate() {
            let step = pair[1].checked_sub(pair[0]).unwrap_or(0);
            if step <= 0 {
                return Err((
                    Some(i + 1),
                    format!(
                        "timestamp {} is not after the previous {}",
                        pair[1], pair[0]
                    ),
                ));
            }
            interval_s = interval_s.min(step);
        }
        let mut gaps = Vec::new();
        for (i, pair) in times_utc_s.windows(2).enumerate() {
            let step = pair[1] - pair[0];
            if step % interval_s != 0 {
                return Err((
                    Some(i + 1),
                    format!("step of {step} s from the previous row is not a multiple of the sampling interval of {interval_s} s"),
                ));
            }
            if step > interval_s {
                gaps.push(Gap {
                    after_utc_s: pair[0],
                    before_utc_s: pair[1],
                    n_missing: step / interval_s - 1,
                });
            }
        }
        Ok(PriceSeries {
            name: name.to_string(),
            times_utc_s,
            closes,
            open_high_low,
            interval_s,
            gaps,
        })
    }

    /// The name given at construction (the file name for a loaded series).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Sample timestamps, UTC seconds since 1970-01-01, strictly increasing.
    pub fn times_utc_s(&self) -> &[i64] {
        &self.times_utc_s
    }
    /// Closes, in quote units per unit of the asset, one per timestamp.
    pub fn closes(&self) -> &[f64] {
        &self.closes
    }
    /// Open, high and low per timestamp, if the file had them.
    pub fn open_high_low(&self) -> Option<&[OpenHighLow]> {
        self.open_high_low.as_deref()
    }
    /// The sampling interval in seconds (3600 for hourly, 86400 for daily files).
    pub fn interval_s(&self) -> i64 {
        self.interval_s
    }
    /// The runs of missing samples, in time order. Empty when the series is complete.
    pub fn gaps(&self) -> &[Gap] {
        &self.gaps
    }
    /// Total number of missing samples over all gaps.
    pub fn n_missing(&self) -> i64 {
        self.gaps.iter().map(|g| g.n_missing).sum()
    }
    /// Number of samples present.
    pub fn len(&self) -> usize {
        self.closes.len()
    }
    /// Always false: a series holds at least two samples.
    pub fn is_empty(&self) -> bool {
        self.closes.is_empty()
    }

    /// The samples at the given timestamps (for instance those of [`align`]), keeping this series' interval, so that
    /// a timestamp dropped by alignment becomes a gap that breaks returns. Errors if a timestamp is not in this
    /// series, or fewer than two remain.
    pub fn restrict_to(&self, times_utc_s: &[i64]) -> Result<PriceSeries, DataError> {
        let mut closes = Vec::with_capacity(times_utc_s.len());
        let mut ohl = self
            .open_high_low
            .as_ref()
            .map(|_| Vec::with_capacity(times_utc_s.len()));
        for &t in times_utc_s {
            let Ok(i) = self.times_utc_s.binary_search(&t) else {
                return Err(DataError {
                    file: self.name.clone(),
                    line: None,
                    rule: format!("timestamp {t} is not in the series"),
                });
            };
            closes.push(self.closes[i]);
            if let (Some(out), Some(all)) = (ohl.as_mut(), self.open_high_low.as_ref()) {
                out.push(all[i]);
            }
        }
        let mut series = PriceSeries::new(&self.name, times_utc_s.to_vec(), closes, ohl)?;
        // A subset may have a coarser smallest step; the grid is still this series' own.
        series.interval_s = self.interval_s;
        series.gaps = gaps_on_grid(&series.times_utc_s, self.interval_s);
        Ok(series)
    }

    /// Returns over `k` samples (`k >= 1`): for every sample `j` with a sample exactly `k` intervals earlier,
    /// `P_j / P_(j-k) - 1` (simple) or `ln(P_j / P_(j-k))` (log), stamped with `t_j`. A gap anywhere in the window
    /// breaks the return: no return spans a missing sample, so a two-hour move is never taken for a one-hour one.
    /// With `k > 1` consecutive returns overlap: they share `k - 1` steps.
    pub fn returns(&self, k: usize, kind: ReturnKind) -> Result<Vec<Return>, DataError> {
        if k == 0 || k >= self.len() {
            return Err(DataError {
                file: self.name.clone(),
                line: None,
                rule: format!("return horizon k = {k} must be in 1..{}", self.len()),
            });
        }
        let span_s = self.interval_s.saturating_mul(k as i64);
        let mut out = Vec::with_capacity(self.len() - k);
        for j in k..self.len() {
            if self.times_utc_s[j] - self.times_utc_s[j - k] != span_s {
                continue;
            }
            let ratio = self.closes[j] / self.closes[j - k];
            let value = match kind {
                ReturnKind::Simple => ratio - 1.0,
                ReturnKind::Log => ratio.ln(),
            };
            out.push(Return {
                end_utc_s: self.times_utc_s[j],
                value,
            });
        }
        Ok(out)
    }
}

fn gaps_on_grid(times_utc_s: &[i64], interval_s: i64) -> Vec<Gap> {
    times_utc_s
        .windows(2)
        .filter(|p| p[1] - p[0] > interval_s)
        .map(|p| Gap {
            after_utc_s: p[0],
            before_utc_s: p[1],
            n_missing: (p[1] - p[0]) / interval_s - 1,
        })
        .collect()
}

/// The timestamps present in every series, ascending. Empty when `series` is empty or they share none.
pub fn align(series: &[&PriceSeries]) -> Vec<i64> {
    let Some((first, rest)) = series.split_first() else {
        return Vec::new();
    };
    first
        .times_utc_s
        .iter()
        .copied()
        .filter(|t| rest.iter().all(|s| s.times_utc_s.binary_search(t).is_ok()))
        .collect()
}

/// Reads and parses one CSV file; see [`parse_csv`]. Errors name the file by its last path component.
pub fn load_csv(path: &Path) -> Result<PriceSeries, DataError> {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let text = std::fs::read_to_string(path).map_err(|e| DataError {
        file: file.clone(),
        line: None,
        rule: format!("cannot be read: {e}"),
    })?;
    parse_csv(&file, &text)
}

/// Parses CSV text in one of the formats in the module docs. `file` names the source in errors.
pub fn parse_csv(file: &str, text: &str) -> Result<PriceSeries, DataError> {
    let at = |line: usize, rule: String| DataError {
        file: file.to_string(),
        line: Some(line),
        rule,
    };
    let mut lines = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    let header_line = lines.next().unwrap_or("");
    let header: Vec<&str> = header_line.split(',').map(str::trim).collect();
    let column = |name: &str| header.iter().position(|h| *h == name);

    let (time_idx, time_format) = if let Some(i) = column("approx_close_date_utc") {
        (i, TimeFormat::Date)
    } else if let Some(i) = column("datetime_utc") {
        (i, TimeFormat::DateTime)
    } else if let Some(i) = column("date") {
        (i, TimeFormat::Date)
    } else {
        return Err(at(
            1,
            "header has no time column (datetime_utc, date or approx_close_date_utc)".to_string(),
        ));
    };
    let close_idx = column("close")
        .or_else(|| column("reference_rate_usd"))
        .ok_or_else(|| {
            at(
                1,
                "header has no price column (close or reference_rate_usd)".to_string(),
            )
        })?;
    let ohl_idx = match (column("open"), column("high"), column("low")) {
        (Some(o), Some(h), Some(l)) => Some([o, h, l]),
        _ => None,
    };
    let open_time_ms_idx = column("open_time_ms");

    let mut times = Vec::new();
    let mut closes = Vec::new();
    // The file line of each row, for errors found after parsing.
    let mut row_lines = Vec::new();
    let mut ohl = ohl_idx.map(|_| Vec::new());
    for (i, row) in lines.enumerate() {
        let line = i + 2;
        if times.len() >= ROWS_MAX {
            return Err(at(line, format!("more than {ROWS_MAX} data rows")));
        }
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        if fields.len() != header.len() {
            return Err(at(
                line,
                format!("expected {} fields, found {}", header.len(), fields.len()),
            ));
        }
        let time_field = fields[time_idx];
        let t = time_format.parse(time_field).ok_or_else(|| {
            at(
                line,
                format!(
                    "{} {time_field:?} is not {}",
                    header[time_idx],
                    time_format.pattern()
                ),
            )
        })?;
        if let Some(ms_idx) = open_time_ms_idx {
            let ms = fields[ms_idx];
            if ms.parse::<i64>().ok() != t.checked_mul(1000) {
                return Err(at(
                    line,
                    format!(
                        "open_time_ms {ms} disagrees with {} {time_field}",
                        header[time_idx]
                    ),
                ));
            }
        }
        if let Some(&previous) = times.last() {
            if t == previous {
                return Err(at(line, format!("duplicate timestamp {time_field}")));
            }
            if t < previous {
                return Err(at(
                    line,
                    format!("timestamp {time_field} is before the previous row's"),
                ));
            }
        }
        let price = |idx: usize| -> Result<f64, DataError> {
            let name = header[idx];
            let value: f64 = fields[idx]
                .parse()
                .map_err(|_| at(line, format!("{name} is not a number")))?;
            if !(value.is_finite() && value > 0.0) {
                return Err(at(line, format!("{name} must be finite and > 0")));
            }
            Ok(value)
        };
        closes.push(price(close_idx)?);
        if let (Some(out), Some([o, h, l])) = (ohl.as_mut(), ohl_idx) {
            out.push(OpenHighLow {
                open: price(o)?,
                high: price(h)?,
                low: price(l)?,
            });
        }
        times.push(t);
        row_lines.push(line);
    }
    PriceSeries::build(file, times, closes, ohl).map_err(|(sample, rule)| DataError {
        file: file.to_string(),
        line: sample.map(|i| row_lines[i]),
        rule,
    })
}

/// `YYYY-MM-DD` as UTC seconds since 1970-01-01 at 00:00 that day, or `None` if it is not a real date in that form.
pub fn date_utc_s(text: &str) -> Option<i64> {
    TimeFormat::Date.parse(text)
}

/// Seconds in one day, for callers turning dates into windows.
pub const SECONDS_PER_DAY: i64 = DAY_S;

#[derive(Clone, Copy)]
enum TimeFormat {
    /// `YYYY-MM-DD`, 00:00 UTC.
    Date,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    DateTime,
}

impl TimeFormat {
    fn pattern(self) -> &'static str {
        match self {
            TimeFormat::Date => "YYYY-MM-DD",
            TimeFormat::DateTime => "YYYY-MM-DDTHH:MM:SSZ",
        }
    }

    /// UTC seconds since 1970-01-01, or `None` if the text is not in this format or not a real date and time.
    fn parse(self, text: &str) -> Option<i64> {
        let b = text.as_bytes();
        let digits = |from: usize, to: usize| -> Option<i64> {
            let s = b.get(from..to)?;
            if !s.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(s).ok()?.parse().ok()
        };
        let date_ok = b.len() >= 10 && b[4] == b'-' && b[7] == b'-';
        let (year, month, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
        let (hour, minute, second) = match self {
            TimeFormat::Date if date_ok && b.len() == 10 => (0, 0, 0),
            TimeFormat::DateTime
                if date_ok
                    && b.len() == 20
                    && b[10] == b'T'
                    && b[13] == b':'
                    && b[16] == b':'
                    && b[19] == b'Z' =>
            {
                (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?)
            }
            _ => return None,
        };
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        Some(days_from_civil(year, month, day) * DAY_S + hour * 3600 + minute * 60 + second)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
