//! The guard on hand-written examples of each check.

use super::*;

fn check(a: &str, b: &str, similarity: f32) -> Result<Match, Mismatch> {
    verify(
        &Analysis::new(a),
        &Analysis::new(b),
        similarity,
        &Policy::default(),
    )
}

#[test]
fn repeats_and_rewordings_pass() {
    assert_eq!(
        check(
            "What is the capital of France?",
            "what's the capital of france",
            0.95
        ),
        Ok(Match::Same)
    );
    assert_eq!(
        check(
            "¿Cómo saco el certificado?",
            "Como saco el certificado",
            0.97
        ),
        Ok(Match::Same)
    );
    assert_eq!(
        check(
            "What are the symptoms of dehydration?",
            "What are the symptons of dehydration?",
            0.9
        ),
        Ok(Match::Same)
    );
    assert_eq!(
        check(
            "Give me a recipe for pancakes",
            "Give me a pancake recipe",
            0.85
        ),
        Ok(Match::Same)
    );
    assert_eq!(
        check(
            "Who wrote Don Quixote?",
            "Who is the author of Don Quixote?",
            0.95
        ),
        Ok(Match::Same)
    );
}

#[test]
fn a_spanish_verb_in_another_person_is_another_who() {
    assert_eq!(
        check(
            "¿El casero me puede demandar por romper el contrato?",
            "¿Puedo demandar al casero por romper el contrato?",
            0.99
        ),
        Err(Mismatch::Order)
    );
    assert_eq!(
        check(
            "¿Mi jefe puede revisar mi correo?",
            "¿Puedo revisar el correo de mi jefe?",
            0.99
        ),
        Err(Mismatch::Order)
    );
    // The same person, the same verb: a repeat still passes.
    assert_eq!(
        check("¿Puedo pagar con tarjeta?", "puedo pagar con tarjeta", 0.99),
        Ok(Match::Same)
    );
}

#[test]
fn near_misses_are_refused_with_their_reason() {
    assert_eq!(
        check("Convert 5 miles to km", "Convert 5 km to miles", 0.99),
        Err(Mismatch::Units)
    );
    assert_eq!(
        check(
            "Translate English to Spanish",
            "Translate from Spanish into English",
            0.95
        ),
        Err(Mismatch::Direction)
    );
    assert_eq!(
        check("Cancel my order", "Do not cancel my order", 0.96),
        Err(Mismatch::Negation)
    );
    assert_eq!(
        check(
            "What is the capital of France?",
            "What is the capital of Germany?",
            0.9
        ),
        Err(Mismatch::Content)
    );
    assert_eq!(
        check("Dose of ibuprofen: 2 mg", "Dose of ibuprofen: 20 mg", 0.99),
        Err(Mismatch::Numbers)
    );
    assert_eq!(
        check("Bake at 180 °C", "Bake at 180 °F", 0.99),
        Err(Mismatch::Units)
    );
    assert_eq!(
        check(
            "Explain machine learning",
            "Explain machine learning for beginners",
            0.95
        ),
        Err(Mismatch::Content)
    );
    assert_eq!(
        check(
            "Did Google acquire YouTube?",
            "Did YouTube acquire Google?",
            0.99
        ),
        Err(Mismatch::Order)
    );
    assert_eq!(
        check(
            "How do I reset my password?",
            "¿Cómo restablezco mi contraseña?",
            0.95
        ),
        Err(Mismatch::Language)
    );
    assert_eq!(
        check(
            "How many days until the party, five or six?",
            "How many days until the party, five or seven?",
            0.99
        ),
        Err(Mismatch::Numbers)
    );
}

#[test]
fn the_exact_tier_folds_case_accents_and_punctuation_but_not_numbers() {
    assert_eq!(normalize("  ¿Cómo  ESTÁS?? "), normalize("como estas"));
    assert_ne!(normalize("Dose: 2 mg"), normalize("Dose: 20 mg"));
    assert_ne!(normalize("1,000 units"), normalize("1000 units"));
}
