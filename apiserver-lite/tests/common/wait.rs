//! Waiting for a condition in tests: `eventually` (async checks through the API) and
//! `wait_for` (blocking checks such as running kubectl), each failing with what it last saw.

use std::future::Future;
use std::time::{Duration, Instant};

/// Poll `f` until it gives Ok, failing after `secs` with the last thing it saw.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("timed out waiting for {what}; last: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Poll `f` (a blocking check, e.g. running kubectl) until it is Ok, failing after `secs`
/// with the last thing it saw.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => panic!("timed out waiting for {what}; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
