//! Delivery of back-channel logout tokens: one HTTP/1.1 POST per relying party, over
//! TLS verified against the system's roots (or plain HTTP to a loopback address, which
//! client registration allows only there), with a time limit.

use std::time::Duration;

/// Sends logout tokens.
#[derive(Debug, Clone)]
pub struct Sender {
    timeout: Duration,
}

impl Sender {
    /// A sender giving each endpoint `timeout_secs` to answer.
    pub fn new(timeout_secs: u64) -> Self {
        Self {
            timeout: Duration::from_secs(timeout_secs.max(1)),
        }
    }

    /// POSTs `logout_token=<token>` to `uri`; Ok on a 2xx answer.
    pub async fn post_logout_token(&self, uri: &str, token: &str) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.post(uri, token)).await {
            Ok(r) => r,
            Err(_) => Err("timeout".into()),
        }
    }

    async fn post(&self, uri: &str, token: &str) -> Result<(), String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", token)
            .finish();
        // The answer's body is read (up to 64 KiB) and dropped, so the connection ends
        // cleanly.
        let answer =
            crate::outbound::exchange(hyper::Method::POST, uri, "*/*", Some(body), 64 * 1024)
                .await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!("http_{}", answer.status))
        }
    }
}
