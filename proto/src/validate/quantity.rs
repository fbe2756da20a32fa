//! Memory sizes and CPU counts as users write them (`64MiB`, `1.5g`, `0.5`).

use super::ValidationError;

/// Nano CPUs in one CPU.
const NANOS_PER_CPU: u64 = 1_000_000_000;

/// Binary units, largest first, as `format_size` prints them.
const SIZE_UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];

/// Parses a memory size into bytes: a decimal number with an optional unit `b`, `k`,
/// `m`, `g` or `t`, optionally followed by `i`, `b` or `ib`, in any case (`1024`,
/// `512k`, `64MiB`, `1.5GiB`). Units are binary (1k = 1024), as in Docker. Fractions of
/// a byte are dropped; the result must be greater than zero.
pub fn parse_size(input: &str) -> Result<u64, ValidationError> {
    let err = |reason: &str| ValidationError::Size {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let s = input.trim();
    if s.starts_with('-') {
        return Err(err("must be greater than zero"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let (whole, fraction) = split_decimal(number).ok_or_else(|| {
        err("expected a number with an optional unit b, k, m, g or t (like 64MiB)")
    })?;
    let shift = unit_shift(unit.trim_start())
        .ok_or_else(|| err("unknown unit: use b, k, m, g or t, optionally followed by i or iB"))?;
    if shift == 0 && fraction.bytes().any(|b| b != b'0') {
        return Err(err("a byte count must be a whole number"));
    }
    let too_large = || err("too large");
    let whole_bytes = parse_digits(whole)
        .and_then(|w| w.checked_mul(1u128 << shift))
        .ok_or_else(too_large)?;
    // 18 digits keep the arithmetic in u128; what they drop is below a byte anyway.
    let fraction = &fraction[..fraction.len().min(18)];
    let fraction_bytes = parse_digits(fraction)
        .map(|f| (f << shift) / 10u128.pow(fraction.len() as u32))
        .ok_or_else(too_large)?;
    let bytes = whole_bytes
        .checked_add(fraction_bytes)
        .ok_or_else(too_large)?;
    if bytes == 0 {
        return Err(err("must be greater than zero"));
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Prints a byte count in the largest binary unit that holds it exactly (`64MiB`,
/// `1536MiB`, `1000B`), in a form `parse_size` reads back.
pub fn format_size(bytes: u64) -> String {
    for (shift, name) in SIZE_UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// Parses a CPU count into nano CPUs (`"0.5"` is 500 000 000, `"2"` is 2e9). At most
/// nine decimal places, since that is the resolution; the result must be greater than
/// zero.
pub fn parse_cpus(input: &str) -> Result<u64, ValidationError> {
    let err = |reason: &str| ValidationError::Cpus {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let s = input.trim();
    if s.starts_with('-') {
        return Err(err("must be greater than zero"));
    }
    let (whole, fraction) =
        split_decimal(s).ok_or_else(|| err("expected a number of CPUs, like 0.5 or 2"))?;
    if fraction.len() > 9 {
        return Err(err("at most 9 decimal places"));
    }
    let too_large = || err("too large");
    let whole_nanos = parse_digits(whole)
        .and_then(|w| w.checked_mul(u128::from(NANOS_PER_CPU)))
        .ok_or_else(too_large)?;
    let fraction_nanos = parse_digits(fraction)
        .map(|f| f * 10u128.pow(9 - fraction.len() as u32))
        .ok_or_else(too_large)?;
    let nanos = whole_nanos + fraction_nanos;
    if nanos == 0 {
        return Err(err("must be greater than zero"));
    }
    u64::try_from(nanos).map_err(|_| too_large())
}

/// Prints nano CPUs as a decimal CPU count (`0.5`, `2`), in a form `parse_cpus` reads
/// back.
pub fn format_cpus(nanos: u64) -> String {
    let whole = nanos / NANOS_PER_CPU;
    let fraction = nanos % NANOS_PER_CPU;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Splits `12.5` into `("12", "5")`. Refuses anything but digits around at most one
/// dot, and a number with no digit at all.
fn split_decimal(number: &str) -> Option<(&str, &str)> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    Some((whole, fraction))
}

/// Parses a run of ASCII digits; the empty string is zero. `None` on overflow.
fn parse_digits(digits: &str) -> Option<u128> {
    if digits.is_empty() {
        return Some(0);
    }
    digits.parse().ok()
}

/// The power of two a unit stands for, or `None` for an unknown unit.
fn unit_shift(unit: &str) -> Option<u32> {
    let unit = unit.to_ascii_lowercase();
    let mut chars = unit.chars();
    let shift = match chars.next() {
        None => return Some(0),
        Some('b') => return chars.as_str().is_empty().then_some(0),
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some(_) => return None,
    };
    matches!(chars.as_str(), "" | "b" | "i" | "ib").then_some(shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_accepted() {
        let cases = [
            ("1024", 1024),
            ("1", 1),
            ("100b", 100),
            ("100B", 100),
            ("512k", 512 << 10),
            ("512K", 512 << 10),
            ("512kb", 512 << 10),
            ("512KiB", 512 << 10),
            ("64m", 64 << 20),
            ("64MiB", 64 << 20),
            ("64mi", 64 << 20),
            ("64 MiB", 64 << 20),
            ("1g", 1 << 30),
            ("1.5GiB", 3 << 29),
            ("1.5g", 3 << 29),
            (".5k", 512),
            ("2.t", 2 << 40),
            ("2T", 2 << 40),
            ("0.1k", 102),
            ("1.0", 1),
        ];
        for (input, bytes) in cases {
            assert_eq!(parse_size(input), Ok(bytes), "{input:?}");
        }
    }

    #[test]
    fn sizes_refused() {
        for bad in [
            "",
            "0",
            "0k",
            "0.0001b",
            "-1",
            "-64m",
            "abc",
            "64x",
            "64mm",
            "64bi",
            "64mib2",
            "1.2.3",
            ".",
            "k",
            "1.5",
            "1.5b",
            "16777216t",
            "99999999999999999999999999999",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(matches!(err, ValidationError::Size { .. }), "{bad:?}");
            assert!(err.to_string().contains(&format!("\"{bad}\"")), "{err}");
        }
        assert_eq!(
            parse_size("-1").unwrap_err().to_string(),
            "invalid size \"-1\": must be greater than zero"
        );
    }

    #[test]
    fn sizes_formatted() {
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(3 << 29), "1536MiB");
        assert_eq!(format_size(1 << 40), "1TiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(0), "0B");
    }

    #[test]
    fn cpus_accepted() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus("1.25"), Ok(1_250_000_000));
        assert_eq!(parse_cpus(".001"), Ok(1_000_000));
        assert_eq!(parse_cpus("0.000000001"), Ok(1));
        assert_eq!(parse_cpus(" 4 "), Ok(4_000_000_000));
    }

    #[test]
    fn cpus_refused() {
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "-0.5",
            "abc",
            "1,5",
            "1.5.2",
            "0.0000000001",
            "1e3",
            "99999999999",
        ] {
            let err = parse_cpus(bad).unwrap_err();
            assert!(matches!(err, ValidationError::Cpus { .. }), "{bad:?}");
        }
        assert_eq!(
            parse_cpus("abc").unwrap_err().to_string(),
            "invalid CPU count \"abc\": expected a number of CPUs, like 0.5 or 2"
        );
    }

    #[test]
    fn cpus_formatted() {
        assert_eq!(format_cpus(500_000_000), "0.5");
        assert_eq!(format_cpus(2_000_000_000), "2");
        assert_eq!(format_cpus(1), "0.000000001");
    }

    proptest! {
        #[test]
        fn size_round_trips(bytes in 1u64..) {
            prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }

        #[test]
        fn size_units_multiply(n in 1u64..1 << 20, unit in prop::sample::select(
            vec![("k", 10u32), ("Ki", 10), ("mb", 20), ("MiB", 20), ("g", 30), ("T", 40)],
        )) {
            prop_assert_eq!(parse_size(&format!("{n}{}", unit.0)), Ok(n << unit.1));
        }

        #[test]
        fn cpus_round_trip(nanos in 1u64..) {
            prop_assert_eq!(parse_cpus(&format_cpus(nanos)), Ok(nanos));
        }
    }
}
