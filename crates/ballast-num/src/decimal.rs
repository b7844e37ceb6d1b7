//! Exact conversion between decimal strings and scaled integers.

/// Parses a decimal string (`"-120.50"`, `"0.00006"`, `"42"`) into an integer scaled by `10^decimals`.
/// Rejects more fractional digits than the scale holds (unless they are zeros), exponents, blanks and overflow, with
/// a message that says which rule was broken.
pub fn parse_decimal(text: &str, decimals: u32) -> Result<i128, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty number".to_string());
    }
    let (negative, digits) = match trimmed.as_bytes()[0] {
        b'-' => (true, &trimmed[1..]),
        b'+' => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(format!("'{text}' is not a number"));
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || !all_digits(frac_part) {
        return Err(format!("'{text}' is not a decimal number"));
    }
    let frac_significant = frac_part.trim_end_matches('0');
    if frac_significant.len() > decimals as usize {
        return Err(format!("'{text}' has more than {decimals} decimal places"));
    }
    let overflow = || format!("'{text}' is out of range");
    let scale = 10i128.checked_pow(decimals).ok_or_else(overflow)?;
    let mut value: i128 = 0;
    for b in int_part.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add((b - b'0') as i128))
            .ok_or_else(overflow)?;
    }
    value = value.checked_mul(scale).ok_or_else(overflow)?;
    let mut frac: i128 = 0;
    for b in frac_significant.bytes() {
        frac = frac * 10 + (b - b'0') as i128;
    }
    frac *= 10i128.pow(decimals - frac_significant.len() as u32);
    value = value.checked_add(frac).ok_or_else(overflow)?;
    Ok(if negative { -value } else { value })
}

/// Formats an integer scaled by `10^decimals` as the shortest exact decimal string (`-120.5`, `0.00006`, `42`).
pub fn format_decimal(raw: i128, decimals: u32) -> String {
    let magnitude = raw.unsigned_abs();
    let scale = 10u128.pow(decimals);
    let int_part = magnitude / scale;
    let frac_part = magnitude % scale;
    let sign = if raw < 0 { "-" } else { "" };
    if frac_part == 0 {
        return format!("{sign}{int_part}");
    }
    let frac = format!("{:0width$}", frac_part, width = decimals as usize);
    format!("{sign}{int_part}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let ok = [
            ("42", 6, 42_000_000),
            ("-120.50", 6, -120_500_000),
            ("0.00006", 12, 60_000_000),
            (".5", 2, 50),
            ("5.", 2, 500),
            ("+1.2300", 2, 123),
        ];
        for (text, d, raw) in ok {
            assert_eq!(parse_decimal(text, d), Ok(raw), "{text}");
        }
        let bad = [
            ("", "empty number"),
            ("1.234", "has more than 2 decimal places"),
            ("1e5", "is not a decimal number"),
            ("abc", "is not a decimal number"),
            (".", "is not a number"),
            ("999999999999999999999999999999999999999", "out of range"),
        ];
        for (text, msg) in bad {
            let err = parse_decimal(text, 2).unwrap_err();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }

    proptest! {
        #![proptest_config(crate::proptest_config(2_000))]
        #[test]
        fn round_trip(raw in any::<i128>().prop_filter("not MIN", |v| *v != i128::MIN), decimals in 0u32..=18) {
            let text = format_decimal(raw, decimals);
            prop_assert_eq!(parse_decimal(&text, decimals), Ok(raw));
        }
    }
}
