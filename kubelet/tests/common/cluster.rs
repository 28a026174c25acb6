//! The end-to-end cluster harness lives in test-support (benchmarks use it too).
pub use test_support::cluster::*;
