//! The bridge against a broker that requires SASL (issue 24 ask 5): a Tansu
//! of its own with `--authentication` and a SCRAM-SHA-512 user. The
//! connection settings come from `AIES_KAFKA_*` variables or the file
//! `AIES_KAFKA_CONFIG_FILE`, never from a manifest: with the right password
//! `aies-bridge produce` delivers, with a wrong one or none it does not,
//! and the password is never printed. OAUTHBEARER with OIDC fetches its
//! token from the identity provider's endpoint with the client
//! credentials. (Tansu 0.6 has no working TLS, so SASL_SSL is not tried
//! here, and it does not check OAUTHBEARER tokens.)

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{free_port, tool, wait_for_port, Process};
use aies_tests::stack::binary;

const USER: &str = "aies-bridge";
const PASSWORD: &str = "scram-secret-2b9e41";

/// A Tansu with one SCRAM-SHA-512 user, then restarted requiring SASL
/// (its users are made through the broker, which then lets nobody in
/// unauthenticated).
struct SaslBroker {
    bootstrap: String,
    _process: Process,
    _dir: tempfile::TempDir,
}

fn tansu(dir: &std::path::Path, url: &str, authentication: bool) -> Process {
    let mut command = Command::new(tool("TANSU_BIN"));
    command
        .args(aies_tests::stack::tansu_args(url))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if authentication {
        command.arg("--authentication");
    }
    Process(command.spawn().expect("starting tansu"))
}

impl SaslBroker {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let open = tansu(dir.path(), &url, false);
        wait_for_port(port, "tansu");
        let made = Command::new(tool("TANSU_BIN"))
            .args(["user", "create", USER, PASSWORD, "--mechanism", "scram512"])
            .args(["--broker", &url])
            .output()
            .expect("tansu user create");
        assert!(made.status.success(), "{made:?}");
        drop(open);
        let process = tansu(dir.path(), &url, true);
        wait_for_port(port, "tansu");
        aies_tansu::index_store(&dir.path().join(aies_tansu::STORE)).unwrap();
        Self {
            bootstrap: format!("127.0.0.1:{port}"),
            _process: process,
            _dir: dir,
        }
    }
}

/// `aies-bridge produce` of 20 events to `topic` with these variables.
fn produce(broker: &SaslBroker, topic: &str, env: &[(&str, &str)]) -> (bool, String) {
    produce_to(&broker.bootstrap, topic, env, "15")
}

fn produce_to(bootstrap: &str, topic: &str, env: &[(&str, &str)], timeout: &str) -> (bool, String) {
    let out = Command::new(binary("aies-bridge"))
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("AIES_RAW_TOPIC", topic)
        .envs(env.iter().copied())
        .args(["produce", "--quiet", "--count", "20", "--timeout", timeout])
        .output()
        .expect("running aies-bridge produce");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_authenticates_with_scram_from_the_environment_or_a_file() {
    let broker = SaslBroker::start();
    let topic = "sasl-crudos";
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", USER)
        .set("sasl.password", PASSWORD)
        .create()
        .unwrap();
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        )
        .await
        .expect("creating a topic as the SCRAM user")
    {
        r.expect("topic created");
    }

    let sasl = [
        ("AIES_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("AIES_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("AIES_KAFKA_SASL_USERNAME", USER),
    ];
    let mut right = sasl.to_vec();
    right.push(("AIES_KAFKA_SASL_PASSWORD", PASSWORD));
    let (ok, out) = produce(&broker, topic, &right);
    assert!(ok && out.starts_with("sent 20, failed 0"), "{out}");

    // The same from a file, as a mounted Secret gives it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client.properties");
    std::fs::write(
        &file,
        format!(
            "# the cluster's client settings\nsecurity.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism=SCRAM-SHA-512\nsasl.username={USER}\nsasl.password={PASSWORD}\n"
        ),
    )
    .unwrap();
    let (ok, out) = produce(
        &broker,
        topic,
        &[("AIES_KAFKA_CONFIG_FILE", file.to_str().unwrap())],
    );
    assert!(ok && out.starts_with("sent 20, failed 0"), "{out}");
    // 40 events arrived, read back as the SCRAM user.
    let offsets = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap.clone();
        move || {
            let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", USER)
                .set("sasl.password", PASSWORD)
                .set("group.id", "sasl-reader")
                .create()
                .unwrap();
            rdkafka::consumer::Consumer::fetch_watermarks(
                &consumer,
                topic,
                0,
                Duration::from_secs(20),
            )
        }
    })
    .await
    .unwrap()
    .expect("watermarks as the SCRAM user");
    assert_eq!(offsets.1 - offsets.0, 40, "{offsets:?}");

    // A wrong password, or none: nothing delivered, and the password the
    // bridge was given is not printed.
    let mut wrong = sasl.to_vec();
    wrong.push(("AIES_KAFKA_SASL_PASSWORD", "not-the-password-77"));
    // (librdkafka retries a failed login: the events stay unconfirmed.)
    let (ok, out) = produce(&broker, topic, &wrong);
    assert!(!ok && out.contains("sent 0,"), "{out}");
    assert!(!out.contains("not-the-password-77"), "{out}");
    let (ok, out) = produce(&broker, topic, &[]);
    assert!(!ok && out.contains("sent 0,"), "{out}");

    // A setting the bridge keeps for itself is refused before any client.
    let (ok, out) = produce(
        &broker,
        topic,
        &[("AIES_KAFKA_ENABLE_IDEMPOTENCE", "false")],
    );
    assert!(!ok && out.contains("enable.idempotence"), "{out}");
}

/// A JWT as an identity provider issues one (unsigned here: librdkafka
/// reads its `sub` and `exp`, the broker would check the signature).
fn jwt(subject: &str) -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        b64(serde_json::json!({"sub": subject, "iat": now, "exp": now + 3600})),
    )
}

/// OAUTHBEARER with OIDC client credentials, as managed Kafkas use it:
/// before it logs in, librdkafka fetches a token from the identity
/// provider's token endpoint (here a local server speaking OAuth 2.0's
/// wire format) with the client id and secret the bridge was given. Tansu
/// 0.6 does not check OAUTHBEARER tokens, so the login itself is not
/// asserted: the fetch is, and that the secret is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_fetches_an_oauthbearer_token_with_client_credentials() {
    use axum::extract::State;
    use axum::http::HeaderMap;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(String, String)>>>;
    async fn token(
        State(seen): State<Seen>,
        headers: HeaderMap,
        body: String,
    ) -> axum::Json<serde_json::Value> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        seen.lock().unwrap().push((auth, body));
        axum::Json(serde_json::json!({
            "access_token": jwt("aies-bridge"), "token_type": "bearer", "expires_in": 3600,
        }))
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/oauth2/token", axum::routing::post(token))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/oauth2/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let broker = SaslBroker::start();
    let secret = "oidc-client-secret-5d1e";
    let env = [
        ("AIES_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("AIES_KAFKA_SASL_MECHANISM", "OAUTHBEARER"),
        ("AIES_KAFKA_SASL_OAUTHBEARER_METHOD", "oidc"),
        ("AIES_KAFKA_SASL_OAUTHBEARER_CLIENT_ID", "aies-bridge"),
        ("AIES_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET", secret),
        ("AIES_KAFKA_SASL_OAUTHBEARER_SCOPE", "kafka"),
        ("AIES_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", &endpoint),
    ];
    let owned: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let bootstrap = broker.bootstrap.clone();
    // The command blocks: off the runtime that serves the token endpoint.
    let (_, out) = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        produce_to(&bootstrap, "oauth-crudos", &env, "5")
    })
    .await
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty(),
        "no token request reached the endpoint: {out}"
    );
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("aies-bridge:{secret}"));
    let (auth, body) = &seen[0];
    assert_eq!(auth, &format!("Basic {basic}"), "{seen:?}");
    assert!(
        body.contains("grant_type=client_credentials") && body.contains("scope=kafka"),
        "{body}"
    );
    assert!(!out.contains(secret), "{out}");
}
