//! Content negotiation for `/api` and `/apis`: the client's Accept header chooses between the
//! legacy documents (APIVersions, APIGroupList) and the aggregated APIGroupDiscoveryList
//! (`apidiscovery.k8s.io` v2 or v2beta1). client-go 1.33 sends
//! `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,
//! application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json`
//! and decides how to parse the answer from its Content-Type alone.

/// What to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    Legacy,
    AggregatedV2,
    AggregatedV2Beta1,
}

impl Representation {
    pub fn content_type(self) -> &'static str {
        match self {
            Representation::Legacy => "application/json",
            Representation::AggregatedV2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            Representation::AggregatedV2Beta1 => "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        }
    }
}

/// One media range of an Accept header, its parameters lowercased by name.
struct MediaRange<'a> {
    essence: String,
    params: Vec<(String, &'a str)>,
    quality: f32,
}

impl<'a> MediaRange<'a> {
    fn parse(text: &'a str) -> Option<MediaRange<'a>> {
        let mut parts = text.split(';');
        let essence = parts.next()?.trim().to_ascii_lowercase();
        if !essence.contains('/') {
            return None;
        }
        let mut params = Vec::new();
        let mut quality = 1.0;
        for p in parts {
            let Some((name, value)) = p.split_once('=') else { continue };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().trim_matches('"');
            if name == "q" {
                quality = value.parse().unwrap_or(0.0);
            } else {
                params.push((name, value));
            }
        }
        Some(MediaRange { essence, params, quality })
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The representation this range asks for, if this server can produce it.
    fn representation(&self) -> Option<Representation> {
        let json = matches!(self.essence.as_str(), "application/json" | "application/*" | "*/*");
        if !json {
            return None;
        }
        match (self.param("g"), self.param("v"), self.param("as")) {
            (None, None, None) => Some(Representation::Legacy),
            // A `profile` (e.g. `nopeer`) changes nothing here: this server has no peers.
            (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => Some(Representation::AggregatedV2),
            (Some("apidiscovery.k8s.io"), Some("v2beta1"), Some("APIGroupDiscoveryList")) => Some(Representation::AggregatedV2Beta1),
            _ => None,
        }
    }
}

/// The representation the Accept header prefers, or None when it accepts nothing this server
/// produces (the caller answers 406). No header means legacy JSON.
pub fn choose(accept: Option<&str>) -> Option<Representation> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Some(Representation::Legacy) };
    let mut ranges: Vec<MediaRange> = accept.split(',').filter_map(MediaRange::parse).filter(|r| r.quality > 0.0).collect();
    // Stable: equal qualities keep the client's order, which is its preference.
    ranges.sort_by(|a, b| b.quality.partial_cmp(&a.quality).unwrap_or(std::cmp::Ordering::Equal));
    ranges.iter().find_map(MediaRange::representation)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_GO: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn client_go_gets_aggregated_v2() {
        assert_eq!(choose(Some(CLIENT_GO)), Some(Representation::AggregatedV2));
    }

    #[test]
    fn nopeer_profile_and_spaces_still_aggregated() {
        let accept = "application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList; profile=nopeer, application/json";
        assert_eq!(choose(Some(accept)), Some(Representation::AggregatedV2));
    }

    #[test]
    fn v2beta1_only_and_legacy_fallbacks() {
        assert_eq!(choose(Some("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")), Some(Representation::AggregatedV2Beta1));
        assert_eq!(choose(None), Some(Representation::Legacy));
        assert_eq!(choose(Some("application/json, */*")), Some(Representation::Legacy));
        assert_eq!(choose(Some("*/*")), Some(Representation::Legacy));
        // An unknown discovery version is skipped in favour of the next range.
        assert_eq!(choose(Some("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json")), Some(Representation::Legacy));
    }

    #[test]
    fn quality_orders_ranges() {
        let accept = "application/json;q=0.5,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.9";
        assert_eq!(choose(Some(accept)), Some(Representation::AggregatedV2));
        assert_eq!(choose(Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0,application/json")), Some(Representation::Legacy));
    }

    #[test]
    fn protobuf_only_is_not_acceptable() {
        assert_eq!(choose(Some("application/vnd.kubernetes.protobuf")), None);
        assert_eq!(choose(Some("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")), None);
    }
}
