//! The `resolvConf` option: a host resolv.conf read into the result's DNS settings.

use std::path::Path;

use super::error::IpamError;
use crate::spec::Dns;

pub fn read(path: &Path) -> Result<Dns, IpamError> {
    let text = std::fs::read_to_string(path).map_err(IpamError::io("cannot read resolvConf", path))?;
    Ok(parse(&text))
}

/// resolv.conf(5): `nameserver`, `domain`, `search` and `options` lines; `#` and `;` start
/// comments; the last `domain` or `search` line wins, as in the resolver.
pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(String::from)),
            Some("domain") => dns.domain = words.next().map(String::from),
            Some("search") => dns.search = words.map(String::from).collect(),
            Some("options") => dns.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_four_keywords() {
        let dns = parse("# generated\nnameserver 10.96.0.10\nnameserver fd00::a ; second\nsearch a.svc b.svc\ndomain example.com\noptions ndots:5 edns0\n");
        assert_eq!(dns.nameservers, ["10.96.0.10", "fd00::a"]);
        assert_eq!(dns.search, ["a.svc", "b.svc"]);
        assert_eq!(dns.domain.as_deref(), Some("example.com"));
        assert_eq!(dns.options, ["ndots:5", "edns0"]);
        assert!(read(Path::new("/nonexistent/resolv.conf")).is_err());
    }
}
