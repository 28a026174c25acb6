//! `state <id>`: the runtime-spec state, as JSON.

use super::Error;
use crate::container::Store;

pub fn state(store: &Store, id: &str) -> Result<(), Error> {
    let c = store.load(id)?;
    let status = c.status(&store.dir(id));
    let text = serde_json::to_string_pretty(&c.oci_state(status)).expect("a JSON value serializes");
    println!("{text}");
    Ok(())
}
