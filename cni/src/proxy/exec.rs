//! The proxy's view of [`crate::tool::run`]: a tool that cannot run is a [`ProxyError`].

use std::process::Output;

use crate::proxy::ProxyError;

pub(crate) fn run(backend: &'static str, netns: Option<&str>, program: &str, args: &[&str], stdin: Option<&str>) -> Result<Output, ProxyError> {
    crate::tool::run(netns, program, args, stdin).map_err(|source| ProxyError::Spawn { backend, program: program.to_string(), source })
}
