//! What every component needs: JSON in and out, calls to other stages through
//! Spin local service chaining, typed variables and Redis connections.

use aies_contract::ErrorBody;
use anyhow::{anyhow, bail, Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
use spin_sdk::variables;

/// Redis logical databases (see DESIGN.md).
pub const DB_CACHE: u8 = 0;
pub const DB_COORDINATION: u8 = 1;
pub const DB_TASKS: u8 = 2;

/// Hash in DB 0 holding the application's counters, read by `GET /metrics`.
pub const METRICS_KEY: &str = "aies:metrics";
/// The ids of the last [`RECENT_TASKS`] finished tasks, newest first (DB 2).
pub const RECENT_TASKS_KEY: &str = "aies:recent";
pub const RECENT_TASKS: usize = 50;
/// A prompt being answered (DB 1): `aies:inflight:<exact id>` holds the task
/// id, so the same prompt in the same scope joins it (coalescing).
pub const INFLIGHT_PREFIX: &str = "aies:inflight:";
/// Label of the offline stand-in, in `model` and in the answer text.
pub const OFFLINE_MODEL: &str = "offline-stand-in";
const OPENAI_DEFAULT_BASE: &str = "https://api.openai.com";

/// The LLM provider in use (`llm_provider`): `gemini`, `openai` or
/// `offline`; `auto` picks gemini when `google_api_key` is set, else openai
/// when `openai_api_key` is set or `openai_base_url` points somewhere other
/// than api.openai.com, else offline.
pub fn llm_provider() -> Result<String> {
    let chosen = var("llm_provider")?;
    if chosen != "auto" {
        return Ok(chosen);
    }
    Ok(if !var("google_api_key")?.is_empty() {
        "gemini".into()
    } else if !var("openai_api_key")?.is_empty()
        || var("openai_base_url")?.trim_end_matches('/') != OPENAI_DEFAULT_BASE
    {
        "openai".into()
    } else {
        "offline".into()
    })
}

/// The model that answers, as results name it (`gemini:gemini-2.0-flash`,
/// `openai:gpt-4o-mini`, `offline-stand-in`).
pub fn llm_model_id() -> Result<String> {
    Ok(match llm_provider()?.as_str() {
        "gemini" => format!("gemini:{}", var("gemini_model")?),
        "openai" => format!("openai:{}", var("openai_model")?),
        other => other.to_string(),
    })
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
    format!("{tenant}:{scope}:{}", hex(&folded, 16))
}

/// The coalescing marker of a prompt (DB 1).
pub fn inflight_key(tenant: &str, scope: &str, prompt: &str) -> String {
    format!("{INFLIGHT_PREFIX}{}", exact_id(tenant, scope, prompt))
}

/// Clears a prompt's coalescing marker if it still names `task_id`
/// (compare and delete: a newer task's marker is left alone).
pub fn release_inflight(task_id: &str, tenant: &str, scope: &str, prompt: &str) -> Result<()> {
    const SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0"#;
    let key = inflight_key(tenant, scope, prompt);
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(1),
        arg(&key),
        arg(task_id),
    ];
    execute(&redis(DB_COORDINATION)?, "EVAL", &args)?;
    Ok(())
}

std::thread_local! {
    /// The trace of the request this instance serves (one per request).
    static TRACE: std::cell::RefCell<Option<aies_contract::TraceParent>> =
        const { std::cell::RefCell::new(None) };
}

/// This request's place in a trace: its `traceparent` header (the host's
/// span for the request, when the host exports spans), or a new trace; log
/// lines ([`log!`]) then carry its trace id.
pub fn start_trace(header: Option<&str>) -> aies_contract::TraceParent {
    let trace = match header.and_then(aies_contract::TraceParent::parse) {
        Some(given) => given,
        None => new_span(None),
    };
    TRACE.with(|t| *t.borrow_mut() = Some(trace.clone()));
    trace
}

/// A new span in `header`'s trace (a new trace when there is none).
pub fn new_span(header: Option<&str>) -> aies_contract::TraceParent {
    let (trace, span) = uuid::Uuid::new_v4().as_u64_pair();
    let (more, _) = uuid::Uuid::new_v4().as_u64_pair();
    aies_contract::TraceParent::continue_or_start(
        header,
        (u128::from(trace) << 64) | u128::from(more),
        span,
    )
}

/// The `traceparent` of this request's span, to hand on.
pub fn current_trace() -> Option<String> {
    TRACE.with(|t| t.borrow().as_ref().map(|t| t.header()))
}

/// A log line on stderr, with the trace id of `trace` (a `traceparent`), or
/// of this request's span.
pub fn log_line(trace: Option<&str>, args: std::fmt::Arguments) {
    let id = match trace.and_then(aies_contract::TraceParent::parse) {
        Some(t) => Some(t.trace_id),
        None => TRACE.with(|t| t.borrow().as_ref().map(|t| t.trace_id.clone())),
    };
    match id {
        Some(id) => eprintln!("trace_id={id} {args}"),
        None => eprintln!("{args}"),
    }
}

/// `eprintln!` with this request's trace id.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log_line(None, format_args!($($arg)*))
    };
}

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

pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .build()
}

pub fn error(status: u16, message: impl Into<String>) -> Response {
    json(
        status,
        &ErrorBody {
            error: message.into(),
        },
    )
}

/// Parses a JSON request body, answering 400 with serde's explanation.
pub fn parse_body<T: DeserializeOwned>(req: &Request) -> Result<T, Response> {
    serde_json::from_slice(req.body()).map_err(|e| error(400, format!("invalid JSON body: {e}")))
}

/// POSTs `body` as JSON to another stage (or the bridge) and decodes the
/// JSON answer; a non-2xx answer is an error carrying its status and body.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(url: &str, body: &Req) -> Result<Resp> {
    let req = Request::builder()
        .method(Method::Post)
        .uri(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body)?)
        .build();
    let resp: Response = spin_sdk::http::send(req)
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = *resp.status();
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(resp.body());
        let detail = serde_json::from_str::<ErrorBody>(&text)
            .map(|e| e.error)
            .unwrap_or_else(|_| text.into_owned());
        return Err(StageError { status, detail }).with_context(|| format!("calling {url}"));
    }
    serde_json::from_slice(resp.body()).with_context(|| format!("decoding the answer of {url}"))
}

/// A stage answered with an error status.
#[derive(Debug)]
pub struct StageError {
    pub status: u16,
    pub detail: String,
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {}: {}", self.status, self.detail)
    }
}

impl std::error::Error for StageError {}

/// A Spin variable, with its name in the error.
pub fn var(name: &str) -> Result<String> {
    variables::get(name).map_err(|e| anyhow!("variable `{name}`: {e}"))
}

/// A Spin variable parsed into a number or flag.
pub fn var_parsed<T: std::str::FromStr>(name: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let raw = var(name)?;
    raw.trim()
        .parse()
        .map_err(|e| anyhow!("variable `{name}` = {raw:?} is not valid: {e}"))
}

/// Whether the request carries `Authorization: Bearer <token>`, compared
/// in constant time (the time taken does not reveal a matching prefix).
pub fn bearer_is(req: &Request, token: &str) -> bool {
    let given = req
        .header("authorization")
        .and_then(|v| v.as_str())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The admin endpoints' guard: `Err` is the answer when the request does
/// not carry `Authorization: Bearer <admin_token>` (403 while the token is
/// empty: the endpoints are off).
pub fn admin_only(req: &Request) -> Result<(), Response> {
    match var("admin_token") {
        Ok(token) if token.is_empty() => Err(error(
            403,
            "the admin endpoints are disabled: set admin_token (SPIN_VARIABLE_ADMIN_TOKEN)",
        )),
        Ok(token) if !bearer_is(req, &token) => Err(error(401, "missing or wrong bearer token")),
        Ok(_) => Ok(()),
        Err(e) => Err(error(500, format!("{e:#}"))),
    }
}

/// Opens logical database `db` on the Redis server named by the
/// `redis_host` / `redis_port` variables.
pub fn redis(db: u8) -> Result<Connection> {
    let address = format!("redis://{}:{}/{db}", var("redis_host")?, var("redis_port")?);
    Connection::open(&address).map_err(|e| anyhow!("opening Redis db {db}: {e}"))
}

pub fn arg(s: impl AsRef<[u8]>) -> RedisParameter {
    RedisParameter::Binary(s.as_ref().to_vec())
}

/// Runs a Redis command, turning its error into one that names the command.
pub fn execute(
    conn: &Connection,
    command: &str,
    args: &[RedisParameter],
) -> Result<Vec<RedisResult>> {
    conn.execute(command, args)
        .map_err(|e| anyhow!("redis {command}: {e}"))
}

/// The text of a flat Redis reply value, if it is one.
pub fn text(value: &RedisResult) -> Option<String> {
    match value {
        RedisResult::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        RedisResult::Status(s) => Some(s.clone()),
        RedisResult::Int64(i) => Some(i.to_string()),
        RedisResult::Nil => None,
    }
}

/// `HGETALL` of a hash as field/value pairs (the reply arrives flat).
pub fn hgetall(conn: &Connection, key: &str) -> Result<Vec<(String, String)>> {
    let flat = execute(conn, "HGETALL", &[arg(key)])?;
    if flat.len() % 2 != 0 {
        bail!("HGETALL {key}: odd number of values");
    }
    Ok(flat
        .chunks(2)
        .map(|p| {
            (
                text(&p[0]).unwrap_or_default(),
                text(&p[1]).unwrap_or_default(),
            )
        })
        .collect())
}

/// Adds one to a counter of the metrics hash. Metrics must never fail a
/// request, so errors are only logged.
pub fn count(field: &str) {
    count_by(field, 1)
}

thread_local! {
    /// Counts kept for one write (see [`defer_counts`]), when deferring.
    static DEFERRED: std::cell::RefCell<Option<Vec<(String, i64)>>> =
        const { std::cell::RefCell::new(None) };
}

/// Adds `n` to a counter of the metrics hash (errors only logged), or keeps
/// it for [`flush_counts`] while counts are deferred.
pub fn count_by(field: &str, n: i64) {
    if n == 0 {
        return;
    }
    let kept = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(counts) => {
            match counts.iter_mut().find(|(f, _)| f == field) {
                Some((_, total)) => *total += n,
                None => counts.push((field.to_string(), n)),
            }
            true
        }
        None => false,
    });
    if !kept {
        add_counts(&[(field.to_string(), n)]);
    }
}

/// From now on, this instance's counts wait for [`flush_counts`]: a request
/// then writes its counters in one round trip instead of one each.
pub fn defer_counts() {
    DEFERRED.with(|d| *d.borrow_mut() = Some(Vec::new()));
}

/// Writes the deferred counts, and counts at once again after it. Call it
/// before the response leaves, so a reader of the counters sees them.
pub fn flush_counts() {
    if let Some(counts) = DEFERRED.with(|d| d.borrow_mut().take()) {
        add_counts(&counts);
    }
}

fn add_counts(counts: &[(String, i64)]) {
    const SCRIPT: &str =
        "for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end";
    let result = redis(DB_CACHE).and_then(|c| match counts {
        [] => Ok(Vec::new()),
        [(field, n)] => execute(
            &c,
            "HINCRBY",
            &[arg(METRICS_KEY), arg(field), RedisParameter::Int64(*n)],
        ),
        _ => {
            let mut args = vec![arg(SCRIPT), RedisParameter::Int64(1), arg(METRICS_KEY)];
            for (field, n) in counts {
                args.push(arg(field));
                args.push(RedisParameter::Int64(*n));
            }
            execute(&c, "EVAL", &args)
        }
    });
    if let Err(e) = result {
        crate::log!("metrics: {e:#}");
    }
}

/// Seconds since the Unix epoch, from the host's wall clock.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The local-service-chaining URL of a stage's route.
/// Waits without blocking the instance: other futures of the same run (the
/// other events of a batch) go on meanwhile, where a thread sleep would
/// hold them all.
pub fn sleep(wait: std::time::Duration) -> impl std::future::Future<Output = ()> {
    use wasi::clocks::monotonic_clock;
    let deadline = monotonic_clock::now().saturating_add(wait.as_nanos() as u64);
    std::future::poll_fn(move |cx| {
        if monotonic_clock::now() >= deadline {
            return std::task::Poll::Ready(());
        }
        let alarm = monotonic_clock::subscribe_instant(deadline);
        spin_executor::push_waker(alarm, cx.waker().clone());
        std::task::Poll::Pending
    })
}

/// The answer of a stage that takes one item or a batch of them: the
/// batch's answers, or the one item's answer as its own response.
pub fn batch_answer(batch: bool, results: Vec<aies_contract::BatchAnswer>) -> Response {
    if batch {
        return json(200, &aies_contract::BatchResponse { results });
    }
    match results.into_iter().next() {
        Some(aies_contract::BatchAnswer {
            task: Some(task), ..
        }) => json(200, &task),
        Some(aies_contract::BatchAnswer {
            status,
            error: Some(e),
            ..
        }) => error(status, e),
        _ => error(500, "no answer"),
    }
}

pub fn stage_url(component: &str, path: &str) -> String {
    format!("http://{component}.spin.internal{path}")
}

/// The answer of a provider API.
pub struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<u64>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The JSON body of a 2xx answer; otherwise an error with the status and
    /// the start of the body (never the request, which may carry a key).
    pub fn json(&self, url: &str) -> Result<serde_json::Value> {
        if !(200..300).contains(&self.status) {
            let text: String = String::from_utf8_lossy(&self.body)
                .chars()
                .take(500)
                .collect();
            bail!("POST {url}: status {}: {text}", self.status);
        }
        serde_json::from_slice(&self.body)
            .with_context(|| format!("POST {url}: answer is not JSON"))
    }
}

/// POSTs JSON to a provider API (an outbound host the manifest allows).
pub async fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Result<Answer> {
    let mut req = Request::builder();
    req.method(Method::Post)
        .uri(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req.header(*k, *v);
    }
    let req = req.body(serde_json::to_vec(body)?).build();
    let resp: Response = spin_sdk::http::send(req)
        .await
        .with_context(|| format!("POST {url}"))?;
    let retry_after = resp
        .header("retry-after")
        .and_then(|v| v.as_str())
        .and_then(|v| v.trim().parse().ok());
    Ok(Answer {
        status: *resp.status(),
        retry_after,
        body: resp.body().to_vec(),
    })
}

/// Sets fields of a task record (a hash in DB 2), stamps `updated_at`, and
/// renews the record's time to live (`result_ttl_seconds`).
pub fn write_task(conn: &Connection, task_id: &str, fields: &[(&str, &str)]) -> Result<()> {
    let key = aies_contract::task_key(task_id);
    let now = now_secs().to_string();
    let mut args = vec![arg(&key), arg("updated_at"), arg(&now)];
    for (field, value) in fields {
        args.push(arg(field));
        args.push(arg(value));
    }
    execute(conn, "HSET", &args)?;
    let ttl: i64 = var_parsed("result_ttl_seconds")?;
    execute(conn, "EXPIRE", &[arg(&key), RedisParameter::Int64(ttl)])?;
    Ok(())
}

/// Marks tasks as running, in one round trip, atomically (one Lua script):
/// a task that is already final is left alone and `false` comes back for
/// it, so a late duplicate of an event never turns a SUCCESS back into
/// STARTED.
pub fn start_tasks(conn: &Connection, tasks: &[(&str, &[(&str, &str)])]) -> Result<Vec<bool>> {
    const STEP: &str = r#"
if redis.call('HEXISTS', key, 'finished_at') == 1 then
  out[i] = 0
else
  redis.call('HSET', key, 'updated_at', now, unpack(fields))
  redis.call('HSETNX', key, 'created_at', now)
  redis.call('HSETNX', key, 'started_ms', now_ms)
  redis.call('EXPIRE', key, ttl)
  out[i] = 1
end"#;
    task_script(conn, STEP, tasks)
}

/// Records tasks' outcomes exactly once, in one round trip, atomically (one
/// Lua script): the first writer claims `finished_at` and writes its fields
/// in the same step; any later writer gets `false` and changes nothing. A
/// crash can never leave a claimed record without its status.
pub fn finish_tasks(conn: &Connection, tasks: &[(&str, &[(&str, &str)])]) -> Result<Vec<bool>> {
    const STEP: &str = r#"
if redis.call('HSETNX', key, 'finished_at', now) == 0 then
  out[i] = 0
else
  redis.call('HSET', key, 'updated_at', now, 'finished_ms', now_ms, unpack(fields))
  redis.call('EXPIRE', key, ttl)
  redis.call('LPUSH', RECENT, string.sub(key, TASK_PREFIX_LEN + 1))
  redis.call('LTRIM', RECENT, 0, RECENT_LEN - 1)
  out[i] = 1
end"#;
    task_script(conn, STEP, tasks)
}

/// Runs `step` for each task record in one `EVAL`: `EVAL script n <task
/// keys..> now ttl (count field value ..)..`, where `step` sees `key`,
/// `fields`, `now`, `ttl` and sets `out[i]` to 1 or 0; true where it is 1.
fn task_script(
    conn: &Connection,
    step: &str,
    tasks: &[(&str, &[(&str, &str)])],
) -> Result<Vec<bool>> {
    let prefix_len = aies_contract::task_key("").len();
    let script = format!(
        r#"
local now, ttl, a, out = ARGV[1], ARGV[2], 3, {{}}
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local RECENT, RECENT_LEN, TASK_PREFIX_LEN = '{RECENT_TASKS_KEY}', {RECENT_TASKS}, {prefix_len}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  local fields = {{}}
  for j = 1, n do fields[j] = ARGV[a + j] end
  a = a + n + 1
  {step}
end
return out"#
    );
    let ttl: i64 = var_parsed("result_ttl_seconds")?;
    let mut args = vec![arg(script), RedisParameter::Int64(tasks.len() as i64)];
    args.extend(tasks.iter().map(|(id, _)| arg(aies_contract::task_key(id))));
    args.push(arg(now_secs().to_string()));
    args.push(arg(ttl.to_string()));
    for (_, fields) in tasks {
        args.push(RedisParameter::Int64(2 * fields.len() as i64));
        for (field, value) in *fields {
            args.push(arg(field));
            args.push(arg(value));
        }
    }
    let reply = execute(conn, "EVAL", &args)?;
    if reply.len() != tasks.len() {
        bail!(
            "task script answered {} values for {} tasks",
            reply.len(),
            tasks.len()
        );
    }
    Ok(reply
        .iter()
        .map(|r| matches!(r, RedisResult::Int64(1)))
        .collect())
}

/// A task record (a hash in DB 2), as read with `HGETALL`.
pub struct TaskRecord(Vec<(String, String)>);

impl TaskRecord {
    pub fn read(conn: &Connection, task_id: &str) -> Result<Self> {
        Ok(Self(hgetall(conn, &aies_contract::task_key(task_id))?))
    }

    pub fn get(&self, field: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.clone())
    }

    /// The task as the API shows it; `None` when there is no such task.
    pub fn task(&self, task_id: &str) -> Option<aies_contract::TaskResult> {
        let status = aies_contract::TaskStatus::parse(&self.get("status")?)?;
        Some(aies_contract::TaskResult {
            task_id: task_id.to_string(),
            status,
            result: self.get("result"),
            error: self.get("error"),
            model: self.get("model"),
        })
    }
}

/// The task as recorded; an error when the record has no valid status.
pub fn stored_task(conn: &Connection, task_id: &str) -> Result<aies_contract::TaskResult> {
    match TaskRecord::read(conn, task_id)?.task(task_id) {
        Some(task) => Ok(task),
        None => bail!("task {task_id} has no valid status"),
    }
}
