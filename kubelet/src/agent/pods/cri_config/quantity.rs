//! Resource quantities as the CRI configs need them: millicores for cpu, whole units (bytes)
//! for memory and hugepages, over the agent's one parser (`agent::quantity`).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The quantity in thousandths, rounded up (as upstream's `MilliValue`); `None` when it
/// does not parse.
pub fn parse_milli(s: &str) -> Option<i128> {
    crate::agent::quantity::parse(s.trim()).ok().map(|n| n.milli_value())
}

/// Millicores (or thousandths of any quantity), clamped to `i64`; 0 when unparsable.
pub fn milli_value(q: &Quantity) -> i64 {
    parse_milli(&q.0).map(|m| m.clamp(0, i64::MAX as i128) as i64).unwrap_or(0)
}

/// Whole units (bytes), rounded up; 0 when unparsable.
pub fn value(q: &Quantity) -> i64 {
    crate::agent::quantity::parse(q.0.trim()).map(|n| n.value().clamp(0, i64::MAX as i128) as i64).unwrap_or(0)
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
