//! The `fermyon:spin/variables` host trait.

use super::{valid_name, VariablesState};
use crate::bindings::variables::{Error, Host};

impl Host for VariablesState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        if !valid_name(&name) {
            return Ok(Err(Error::InvalidName(name)));
        }
        Ok(self
            .values
            .get(&name)
            .cloned()
            .ok_or(Error::Undefined(name)))
    }
}
