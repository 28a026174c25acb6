//! One-time tokens: each names one prepared request, is taken by the first client that
//! presents it, and expires if nobody does in time (a URL must not stay a way in).

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Error, Pending, io};

/// How long a URL from `Exec`/`PortForward` stays usable, as in the kubelet.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

pub struct Tokens {
    ttl: Duration,
    pending: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Tokens {
    pub fn new(ttl: Duration) -> Tokens {
        Tokens { ttl, pending: Mutex::new(HashMap::new()) }
    }

    /// Stores `request` under a new random token; expired entries are dropped on the way.
    pub fn insert(&self, request: Pending) -> Result<String, Error> {
        let token = random_token()?;
        let mut pending = self.pending.lock().expect("tokens lock");
        let ttl = self.ttl;
        pending.retain(|_, (at, _)| at.elapsed() < ttl);
        pending.insert(token.clone(), (Instant::now(), request));
        Ok(token)
    }

    /// The request of `token`, once; `None` if unknown, used or expired.
    pub fn take(&self, token: &str) -> Option<Pending> {
        let (at, request) = self.pending.lock().expect("tokens lock").remove(token)?;
        (at.elapsed() < self.ttl).then_some(request)
    }
}

/// 128 bits from the kernel, URL-safe hex.
fn random_token() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(io("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf() -> Pending {
        Pending::PortForward { netns: "/ns".into() }
    }

    #[test]
    fn a_token_is_taken_once() {
        let t = Tokens::new(TOKEN_TTL);
        let a = t.insert(pf()).unwrap();
        let b = t.insert(pf()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(t.take(&a).is_some());
        assert!(t.take(&a).is_none());
        assert!(t.take("nope").is_none());
        assert!(t.take(&b).is_some());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = Tokens::new(Duration::ZERO);
        let a = t.insert(pf()).unwrap();
        assert!(t.take(&a).is_none());
    }
}
