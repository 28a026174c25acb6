//! `start <id>`: let the created container's init run the user's program.

use super::{lifecycle, Error};
use crate::container::Store;

pub fn start(store: &Store, id: &str) -> Result<(), Error> {
    let c = store.load(id)?;
    lifecycle::start(store, &c)
}
