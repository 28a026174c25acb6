//! Kubernetes resource quantities (`500m`, `128Mi`, `1.5G`, `2e3`) as exact numbers: the
//! agent's one parser (CRI resources, the downward API, emptyDir sizes, node capacity).

/// A quantity in billionths (nano units), exact for every suffix Kubernetes accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nanos(pub i128);

const NANO: i128 = 1_000_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct QuantityError(pub String);

/// Parse a quantity string.
pub fn parse(input: &str) -> Result<Nanos, QuantityError> {
    let bad = || QuantityError(input.to_string());
    let s = input.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(bad());
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // The value as digits / 10^scale.
    let digits: i128 = format!("{whole}{fraction}").parse().map_err(|_| bad())?;
    let mut scale = fraction.len() as i32;
    let (multiplier, exp10): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        other => {
            let exp = other.strip_prefix(['e', 'E']).ok_or_else(bad)?;
            (1, exp.parse::<i32>().map_err(|_| bad())?)
        }
    };
    scale -= exp10 + 9;
    let mut value = digits.checked_mul(multiplier).ok_or_else(bad)?;
    while scale < 0 {
        value = value.checked_mul(10).ok_or_else(bad)?;
        scale += 1;
    }
    // Below a nano unit rounds up, as the API server does.
    let divisor = 10i128.checked_pow(scale as u32).ok_or_else(bad)?;
    let value = (value + divisor - 1) / divisor;
    Ok(Nanos(if negative { -value } else { value }))
}

impl Nanos {
    /// The value in whole units, rounded up (`Quantity.Value()`).
    pub fn value(self) -> i128 {
        ceil_div(self.0, NANO)
    }

    /// The value in thousandths, rounded up (`Quantity.MilliValue()`).
    pub fn milli_value(self) -> i128 {
        ceil_div(self.0, 1_000_000)
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        q + 1
    } else {
        q
    }
}

/// `ceil(value / divisor)` for a resource, as the downward API reports it: cpu in
/// millicores over the divisor's millicores, everything else in whole units.
pub fn divide(resource: &str, value: Nanos, divisor: Nanos) -> i128 {
    if resource.ends_with("cpu") {
        let d = divisor.milli_value().max(1);
        ceil_div(value.milli_value(), d)
    } else {
        let d = divisor.value().max(1);
        ceil_div(value.value(), d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_fractions() {
        assert_eq!(parse("500m").unwrap().milli_value(), 500);
        assert_eq!(parse("1.5").unwrap().milli_value(), 1500);
        assert_eq!(parse("128Mi").unwrap().value(), 128 << 20);
        assert_eq!(parse("1G").unwrap().value(), 1_000_000_000);
        assert_eq!(parse("2e3").unwrap().value(), 2000);
        assert_eq!(parse("1n").unwrap().0, 1);
        assert_eq!(parse("0.1m").unwrap().milli_value(), 1);
        assert!(parse("abc").is_err());
        assert!(parse("1Xi").is_err());
    }

    #[test]
    fn division_rounds_up_cpu_in_millicores() {
        assert_eq!(
            divide("limits.cpu", parse("250m").unwrap(), parse("1").unwrap()),
            1
        );
        assert_eq!(
            divide("limits.cpu", parse("250m").unwrap(), parse("1m").unwrap()),
            250
        );
        assert_eq!(
            divide(
                "limits.memory",
                parse("64Mi").unwrap(),
                parse("1Mi").unwrap()
            ),
            64
        );
        assert_eq!(
            divide(
                "limits.memory",
                parse("1000").unwrap(),
                parse("1Ki").unwrap()
            ),
            1
        );
    }
}
