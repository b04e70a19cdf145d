//! The LLM and embedding providers: which one answers, and POSTing JSON to
//! their APIs.

use crate::var;
use anyhow::{bail, Context, Result};
use spin_sdk::http::{Method, Request, Response};

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
    Ok(auto_provider(var)?.to_string())
}

/// What `auto` picks, reading only the variables it needs (a component
/// may not declare the others).
fn auto_provider(var: impl Fn(&str) -> Result<String>) -> Result<&'static str> {
    Ok(if !var("google_api_key")?.is_empty() {
        "gemini"
    } else if !var("openai_api_key")?.is_empty()
        || var("openai_base_url")?.trim_end_matches('/') != OPENAI_DEFAULT_BASE
    {
        "openai"
    } else {
        "offline"
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables given, and an error for any other (an undeclared one).
    fn vars<'a>(given: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Result<String> + 'a {
        move |name| match given.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => Ok(v.to_string()),
            None => anyhow::bail!("variable `{name}` is not declared"),
        }
    }

    #[test]
    fn auto_prefers_gemini_then_openai_then_offline() {
        let base = ("openai_base_url", "https://api.openai.com/");
        let pick = |given: &[(&str, &str)]| auto_provider(vars(given)).unwrap();
        assert_eq!(pick(&[("google_api_key", "g")]), "gemini");
        assert_eq!(
            pick(&[("google_api_key", ""), ("openai_api_key", "o")]),
            "openai"
        );
        assert_eq!(
            pick(&[
                ("google_api_key", ""),
                ("openai_api_key", ""),
                ("openai_base_url", "http://localhost:11434")
            ]),
            "openai"
        );
        assert_eq!(
            pick(&[("google_api_key", ""), ("openai_api_key", ""), base]),
            "offline"
        );
        assert!(auto_provider(vars(&[("google_api_key", "")])).is_err());
    }

    #[test]
    fn an_error_answer_shows_its_status_and_the_start_of_its_body() {
        let answer = Answer {
            status: 429,
            retry_after: Some(3),
            body: "x".repeat(600).into_bytes(),
        };
        let e = answer.json("https://p/v1").unwrap_err().to_string();
        assert_eq!(
            e,
            format!("POST https://p/v1: status 429: {}", "x".repeat(500))
        );
        let ok = Answer {
            status: 200,
            retry_after: None,
            body: br#"{"a":1}"#.to_vec(),
        };
        assert_eq!(ok.json("u").unwrap()["a"], 1);
    }
}
