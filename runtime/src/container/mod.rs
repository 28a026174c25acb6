//! Containers as the runtime keeps them between commands: one directory per container under
//! `--root`, holding `state.json` and, until `start`, the `exec.fifo` the init waits on.

mod process_info;
mod record;
mod store;

pub use process_info::{process_start_time, ProcessInfo};
pub use record::{Container, Status};
pub use store::{validate_id, Store, StoreError};
