//! Resource quantities (`500m`, `1Gi`, `2e3`): parsed just far enough to compare them, which
//! defaulting (QoS class) and validation (requests not above limits) need.

use std::cmp::Ordering;

/// A parsed quantity as a rational number of base units, kept as f64: exact for the values
/// resources use in practice (milli-cores, byte counts below 2^53).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Quantity(f64);

impl Quantity {
    /// Parses the Kubernetes quantity grammar: a signed decimal number and an optional
    /// binary (Ki..Ei), decimal (n u m k M G T P E) or exponent (e3, E-2) suffix.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
        let (number, suffix) = s.split_at(number_end);
        let digits = number.trim_start_matches(['+', '-']);
        if digits.is_empty() || digits == "." || digits.contains(['+', '-']) || digits.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let multiplier = match suffix {
            "" => 1.0,
            "Ki" => 1024f64,
            "Mi" => 1024f64.powi(2),
            "Gi" => 1024f64.powi(3),
            "Ti" => 1024f64.powi(4),
            "Pi" => 1024f64.powi(5),
            "Ei" => 1024f64.powi(6),
            "n" => 1e-9,
            "u" => 1e-6,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "P" => 1e15,
            "E" => 1e18,
            exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse::<i32>().ok()?),
            _ => return None,
        };
        Some(Quantity(value * multiplier))
    }

    pub fn value(self) -> f64 {
        self.0
    }

    pub fn compare(self, other: Quantity) -> Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// A quantity in JSON: a string, or a bare number as some clients send.
pub fn from_json(v: &serde_json::Value) -> Option<Quantity> {
    match v {
        serde_json::Value::String(s) => Quantity::parse(s),
        serde_json::Value::Number(n) => n.as_f64().map(Quantity),
        _ => None,
    }
}

/// Maps whose values are all quantities (`resources.limits`, `status.capacity`, ...).
const QUANTITY_MAPS: &[&str] = &["requests", "limits", "capacity", "allocatable", "overhead", "hard", "used"];

/// Rewrites quantities written as bare JSON numbers (`cpu: 1` in YAML) as the strings the
/// API stores and returns (`"1"`).
pub fn normalize(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if QUANTITY_MAPS.contains(&k.as_str()) {
                    if let Value::Object(quantities) = child {
                        for q in quantities.values_mut() {
                            if let Value::Number(n) = q {
                                *q = Value::String(n.to_string());
                            }
                        }
                    }
                } else if k == "sizeLimit"
                    && let Value::Number(n) = child {
                        *child = Value::String(n.to_string());
                    }
                normalize(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_suffix_family() {
        assert_eq!(Quantity::parse("500m").unwrap().value(), 0.5);
        assert_eq!(Quantity::parse("1").unwrap().value(), 1.0);
        assert_eq!(Quantity::parse("1Gi").unwrap().value(), 1073741824.0);
        assert_eq!(Quantity::parse("128M").unwrap().value(), 128e6);
        assert_eq!(Quantity::parse("2e3").unwrap().value(), 2000.0);
        assert_eq!(Quantity::parse("1.5Ki").unwrap().value(), 1536.0);
        assert!(Quantity::parse("1Gi").unwrap() > Quantity::parse("1G").unwrap());
        for bad in ["", "abc", "1Gb", "--1", "1..2", "m"] {
            assert!(Quantity::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn numeric_quantities_become_strings() {
        let mut v = serde_json::json!({"containers": [{"resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}], "emptyDir": {"sizeLimit": 500}, "replicas": 3});
        normalize(&mut v);
        assert_eq!(v, serde_json::json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}], "emptyDir": {"sizeLimit": "500"}, "replicas": 3}));
    }
}
