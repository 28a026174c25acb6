//! The agent's main loop (being written: issue 9).

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the node agent is not finished yet")]
    Unfinished,
}

pub async fn run(config: super::config::AgentConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), AgentError> {
    let _ = (config, shutdown);
    Err(AgentError::Unfinished)
}
