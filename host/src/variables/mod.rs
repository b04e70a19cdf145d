//! `fermyon:spin/variables`: a component reads its own
//! `[component.x.variables]`, their templates expanded at start-up.

use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::variables;

mod host;
#[cfg(test)]
mod tests;

/// One run's view of its component's variables.
pub struct VariablesState {
    values: Arc<HashMap<String, String>>,
}

impl VariablesState {
    /// `values`: the component's variables, templates already expanded.
    pub fn new(values: Arc<HashMap<String, String>>) -> Self {
        Self { values }
    }
}

/// Links `fermyon:spin/variables`, served by the state `get` picks out of a
/// store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut VariablesState,
) -> wasmtime::Result<()> {
    variables::add_to_linker::<T, HasSelf<VariablesState>>(linker, get)
}

/// Spin's rule for a variable name: lower-case ASCII letters, digits and `_`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
