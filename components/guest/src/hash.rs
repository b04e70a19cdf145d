//! Ids made by hashing: cache scopes and prompts' exact ids.

use aies_contract::keys;

/// The first `bytes` bytes of the text's SHA-256, in hex.
pub fn hex(text: &str, bytes: usize) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    digest
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cache scope of an answer: the LLM model and the generation
/// parameters, hashed (24 hex digits). Answers are served only within it.
pub fn scope_id(llm_model: &str, generation: &aies_contract::Generation) -> String {
    hex(&format!("{llm_model}\n{}", generation.canonical()), 12)
}

/// A prompt's id within a tenant and scope, up to case, accents,
/// punctuation and spacing (never numbers): `<tenant>:<scope>:<hash>`.
/// The exact tier and coalescing key on it.
pub fn exact_id(tenant: &str, scope: &str, prompt: &str) -> String {
    let folded = aies_cache_guard::normalize(prompt);
    keys::exact_id(tenant, scope, &hex(&folded, 16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aies_contract::Generation;

    #[test]
    fn hex_is_a_prefix_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea...
        assert_eq!(hex("abc", 4), "ba7816bf");
        assert_eq!(hex("abc", 16).len(), 32);
    }

    #[test]
    fn scopes_differ_by_model_and_parameters() {
        let plain = Generation::default();
        let scope = scope_id("openai:gpt-4o-mini", &plain);
        assert_eq!(scope.len(), 24);
        assert!(aies_contract::valid_scope(&scope));
        assert_eq!(scope, scope_id("openai:gpt-4o-mini", &plain));
        assert_ne!(scope, scope_id("gemini:gemini-2.0-flash", &plain));
        let warm = Generation {
            temperature: Some(0.7),
            ..Generation::default()
        };
        assert_ne!(scope, scope_id("openai:gpt-4o-mini", &warm));
    }

    #[test]
    fn exact_ids_fold_wording_but_not_numbers() {
        let id = exact_id("acme", "ab12", "What is Rust?");
        assert!(id.starts_with("acme:ab12:"), "{id}");
        assert_eq!(id.len(), "acme:ab12:".len() + 32);
        assert_eq!(id, exact_id("acme", "ab12", "  what is   RUST "));
        assert_ne!(id, exact_id("globex", "ab12", "What is Rust?"));
        assert_ne!(
            exact_id("acme", "ab12", "Add 2 and 3"),
            exact_id("acme", "ab12", "Add 2 and 4")
        );
    }
}
