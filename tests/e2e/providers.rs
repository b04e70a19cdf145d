//! The remote embedding providers, through their wire formats: an
//! OpenAI-compatible `/v1/embeddings` and Gemini `:batchEmbedContents`
//! fill and answer the semantic cache in place of the local model.

use crate::fake_llm::{answer, FakeLlm};
use crate::harness::{manifest_variant, model_dir, Options, System};

async fn cache_with_remote_embeddings(provider: &'static str) {
    let fake = FakeLlm::start().await;
    let mut options = Options::new(provider).llm(&fake, "openai");
    options
        .variables
        .insert("embedding_provider".into(), provider.into());
    let system = System::start(options).await;

    let prompt = "Where is the Eiffel Tower?";
    system.complete(prompt).await;
    // The lookup that missed; the cache fill reused its vector.
    assert_eq!(fake.embedding_calls(), 1);

    let (status, hit) = system
        .process("Where is the Eiffel Tower, please?", None)
        .await;
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["result"], answer("openai", prompt));
    assert_eq!(hit["cache"]["tier"], "semantic", "{hit}");
    assert!(hit["similarity"].as_f64().unwrap() >= 0.8, "{hit}");
    // The paraphrase was embedded by the remote provider too.
    assert_eq!(fake.embedding_calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_embeddings() {
    cache_with_remote_embeddings("openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_embeddings() {
    cache_with_remote_embeddings("gemini").await;
}

/// embed is private in the app; a test manifest gives it a route so its
/// answer can be read directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_dimension_other_than_vector_dimension_is_a_clear_error() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new("dimension").llm(&fake, "openai");
    options.manifest = Some(manifest_variant(
        dir.path(),
        &[(
            "route = { private = true }\ncomponent = \"embed\"",
            "route = \"/embed\"\ncomponent = \"embed\"",
        )],
    ));
    options.model_dir = Some(model_dir());
    for (k, v) in [("embedding_provider", "openai"), ("vector_dimension", "8")] {
        options.variables.insert(k.into(), v.into());
    }
    let system = System::start(options).await;
    let resp = system
        .client
        .post(system.url("/embed"))
        .json(&serde_json::json!({"texts": ["hello"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("dimension 384")
            && error.contains("VECTOR_DIMENSION")
            && error.contains("is 8"),
        "{error}"
    );
}

/// A cache index left by a deployment with another VECTOR_DIMENSION is
/// named, with both dimensions and the way out, instead of a bare
/// RediSearch error. (A test manifest routes cache-lookup's /lookup.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_another_dimension_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new("index-dim");
    options.manifest = Some(manifest_variant(
        dir.path(),
        &[(
            "route = \"/admin/cache/...\"\ncomponent = \"cache-lookup\"",
            "route = \"/lookup\"\ncomponent = \"cache-lookup\"",
        )],
    ));
    options.model_dir = Some(model_dir());
    options
        .variables
        .insert("vector_dimension".into(), "8".into());
    let system = System::start(options).await;

    // The index an earlier 384-dimension deployment created.
    let mut db0 = system.redis.connection(0).await;
    let _: () = redis::cmd("FT.CREATE")
        .arg("aies_cache_idx_local_all_minilm_l6_v2")
        .arg("ON")
        .arg("HASH")
        .arg("PREFIX")
        .arg(1)
        .arg("aies:cache:local_all_minilm_l6_v2:")
        .arg("SCHEMA")
        .arg("tenant")
        .arg("TAG")
        .arg("vector")
        .arg("VECTOR")
        .arg("HNSW")
        .arg(6)
        .arg("TYPE")
        .arg("FLOAT32")
        .arg("DIM")
        .arg(384)
        .arg("DISTANCE_METRIC")
        .arg("COSINE")
        .query_async(&mut db0)
        .await
        .unwrap();

    let resp = system
        .client
        .post(system.url("/lookup"))
        .json(&serde_json::json!({
            "tenant": "default", "prompt": "hi", "vector": vec![0.5; 8],
            "model": "local:all-minilm-l6-v2", "scope": "0123456789abcdef01234567"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("created with dimension 384") && error.contains("VECTOR_DIMENSION is 8"),
        "{error}"
    );
}
