//! Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1G`, `1e3`) as integers: the
//! kubelet only needs millicores for cpu and whole units (bytes) for memory and hugepages.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The quantity in thousandths, rounded up (as upstream's `MilliValue`); `None` when it
/// does not parse or does not fit.
pub fn parse_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let digits_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    // (power of two, power of ten) the suffix multiplies by.
    let (exp2, exp10): (u32, i32) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        e if e.starts_with(['e', 'E']) => (0, e[1..].parse().ok()?),
        _ => return None,
    };
    let mantissa: i128 = format!("{int_part}{frac_part}").parse().ok()?;
    // value * 1000 = mantissa * 2^exp2 * 10^(exp10 + 3 - digits after the point)
    let scale = exp10 + 3 - frac_part.len() as i32;
    if !(-40..=30).contains(&scale) {
        return None;
    }
    let mut value = mantissa.checked_mul(1i128 << exp2)?;
    if scale >= 0 {
        value = value.checked_mul(10i128.pow(scale as u32))?;
    } else {
        let d = 10i128.pow((-scale) as u32);
        value = (value + d - 1) / d;
    }
    Some(if negative { -value } else { value })
}

/// Millicores (or thousandths of any quantity), clamped to `i64`; 0 when unparsable.
pub fn milli_value(q: &Quantity) -> i64 {
    parse_milli(&q.0).map(|m| m.clamp(0, i64::MAX as i128) as i64).unwrap_or(0)
}

/// Whole units (bytes), rounded up; 0 when unparsable.
pub fn value(q: &Quantity) -> i64 {
    parse_milli(&q.0).map(|m| ((m + 999).div_euclid(1000)).clamp(0, i64::MAX as i128) as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn cpu_quantities_in_millicores() {
        assert_eq!(milli_value(&q("100m")), 100);
        assert_eq!(milli_value(&q("0.5")), 500);
        assert_eq!(milli_value(&q("2")), 2000);
        assert_eq!(milli_value(&q("1.0005")), 1001, "rounded up");
        assert_eq!(milli_value(&q("250000u")), 250);
    }

    #[test]
    fn memory_quantities_in_bytes() {
        assert_eq!(value(&q("128Mi")), 128 << 20);
        assert_eq!(value(&q("1G")), 1_000_000_000);
        assert_eq!(value(&q("1.5Gi")), 3 << 29);
        assert_eq!(value(&q("1e3")), 1000);
        assert_eq!(value(&q("1k")), 1000);
        assert_eq!(value(&q("1500m")), 2, "rounded up to a whole byte");
    }

    #[test]
    fn garbage_is_zero() {
        assert_eq!(value(&q("lots")), 0);
        assert_eq!(value(&q("")), 0);
        assert_eq!(value(&q("12Q")), 0);
    }
}
