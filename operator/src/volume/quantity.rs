//! Kubernetes quantities (`10Gi`, `500M`, `1.5Ti`, `1e9`) as byte counts, and back.
//! `k8s_openapi`'s `Quantity` is the string only; this is the arithmetic the volume
//! expansion needs.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub const KIB: u128 = 1 << 10;
pub const MIB: u128 = 1 << 20;
pub const GIB: u128 = 1 << 30;

/// `(multiplier, divisor)` of a suffix: binary SI, decimal SI or a decimal exponent.
fn suffix_scale(suffix: &str) -> Option<(u128, u128)> {
    let bin = |p: u32| Some((1u128 << p, 1));
    let dec = |p: u32| Some((10u128.pow(p), 1));
    match suffix {
        "" => Some((1, 1)),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        "m" => Some((1, 1000)),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let (negative, digits) = match exp.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, exp.strip_prefix('+').unwrap_or(exp)),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let p: u32 = digits.parse().ok().filter(|p| *p <= 30)?;
            let f = 10u128.pow(p);
            Some(if negative { (1, f) } else { (f, 1) })
        }
    }
}

/// The number of bytes a quantity stands for, rounded up to a whole byte. `None` for
/// a negative or malformed quantity.
pub fn parse_bytes(q: &str) -> Option<u128> {
    let s = q.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') || int.len() + frac.len() > 30 {
        return None;
    }
    let digits = format!("{int}{frac}");
    let mantissa: u128 = digits.parse().ok()?;
    let (mul, div) = suffix_scale(suffix)?;
    let num = mantissa.checked_mul(mul)?;
    let den = div.checked_mul(10u128.checked_pow(u32::try_from(frac.len()).ok()?)?)?;
    Some(num.div_ceil(den))
}

/// [`parse_bytes`] of a `Quantity`.
pub fn bytes(q: &Quantity) -> Option<u128> {
    parse_bytes(&q.0)
}

/// Bytes as the shortest exact binary quantity (`15Gi`, `1536Mi`, `1000`).
pub fn format_bytes(b: u128) -> String {
    for (unit, suffix) in [(1u128 << 40, "Ti"), (GIB, "Gi"), (MIB, "Mi"), (KIB, "Ki")] {
        if b >= unit && b.is_multiple_of(unit) {
            return format!("{}{suffix}", b / unit);
        }
    }
    b.to_string()
}

/// Human-readable, for messages: `8.5Gi`.
pub fn human(b: u128) -> String {
    let gib = b as f64 / GIB as f64;
    if gib >= 1.0 {
        return format!("{}Gi", (gib * 10.0).round() / 10.0);
    }
    format!("{}Mi", ((b as f64 / MIB as f64) * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_decimal_and_exponent_suffixes_parse_to_bytes() {
        assert_eq!(parse_bytes("10Gi"), Some(10 * GIB));
        assert_eq!(parse_bytes("512Mi"), Some(512 * MIB));
        assert_eq!(parse_bytes("100Ki"), Some(100 * KIB));
        assert_eq!(parse_bytes("2Ti"), Some(2 << 40));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("500M"), Some(500_000_000));
        assert_eq!(parse_bytes("3k"), Some(3000));
        assert_eq!(parse_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(parse_bytes("12E+2"), Some(1200));
        assert_eq!(parse_bytes("2E"), Some(2_000_000_000_000_000_000));
        assert_eq!(parse_bytes("123456"), Some(123_456));
        assert_eq!(bytes(&Quantity("20Gi".into())), Some(20 * GIB));
    }

    #[test]
    fn fractions_round_up_to_a_whole_byte() {
        assert_eq!(parse_bytes("1.5Gi"), Some(3 * GIB / 2));
        assert_eq!(parse_bytes("0.5Ki"), Some(512));
        assert_eq!(parse_bytes(".5M"), Some(500_000));
        assert_eq!(parse_bytes("1500m"), Some(2));
        assert_eq!(parse_bytes("1e-1"), Some(1));
    }

    #[test]
    fn malformed_and_negative_quantities_are_refused() {
        for q in [
            "", "Gi", "10 Gi", "10gi", "10GB", "-1Gi", "1.2.3", "1e", "1e99", "ten", ".",
        ] {
            assert_eq!(parse_bytes(q), None, "{q:?}");
        }
    }

    #[test]
    fn bytes_format_as_the_largest_exact_binary_unit() {
        assert_eq!(format_bytes(15 * GIB), "15Gi");
        assert_eq!(format_bytes(1536 * MIB), "1536Mi");
        assert_eq!(format_bytes(3 * KIB), "3Ki");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(4 << 40), "4Ti");
        assert_eq!(parse_bytes(&format_bytes(1536 * MIB)), Some(1536 * MIB));
        assert_eq!(human(17 * GIB / 2), "8.5Gi");
        assert_eq!(human(300 * MIB), "300Mi");
    }
}
