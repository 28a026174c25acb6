//! (being written: issue 9)
pub mod objects;
