//! The end-to-end cluster harness lives in test-support (benchmarks use it too).
#[allow(unused_imports)]
pub use test_support::cluster::*;
