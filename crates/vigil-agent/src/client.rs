//! The agent's HTTP client: blocking (ureq), called on blocking threads, with a connect
//! timeout and a timeout for the whole call, no proxy, no redirects, bounded answers.

use std::time::Duration;

use serde::de::DeserializeOwned;

/// Largest JSON answer read.
const MAX_JSON_ANSWER_BYTES: u64 = 8 << 20;
/// Largest piece read (pieces are at most 16 MiB).
const MAX_PIECE_BYTES: u64 = 17 << 20;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No answer: no connection, a timeout, a connection cut.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// The server answered with an error status.
    #[error("the server answered {status}: {body}")]
    Status { status: u16, body: String },
    /// The answer is not what was expected.
    #[error("unexpected answer: {0}")]
    Answer(String),
}

impl ClientError {
    /// A refusal the same request would meet again (a bad body, too large): not worth
    /// resending. A wrong token, a missing route and the server's own errors may change.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Status { status, .. } => matches!(status, 400 | 413 | 422),
            ClientError::Transport(_) | ClientError::Answer(_) => false,
        }
    }
}

/// A client of one server with one token.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: String,
}

impl Client {
    pub fn new(server: &str, token: &str, timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(5).min(timeout)))
            .timeout_global(Some(timeout))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            base: server.trim_end_matches('/').to_owned(),
            authorization: format!("Bearer {token}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a JSON body; the answer's status and body.
    fn post(&self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
        let mut response = self
            .agent
            .post(&self.url(path))
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|error| ClientError::Transport(error.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_JSON_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|error| ClientError::Transport(error.to_string()))?;
        Ok((status, bytes))
    }

    fn get(&self, path: &str, limit: u64) -> Result<(u16, Vec<u8>), ClientError> {
        let mut response = self
            .agent
            .get(&self.url(path))
            .header("Authorization", &self.authorization)
            .call()
            .map_err(|error| ClientError::Transport(error.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|error| ClientError::Transport(error.to_string()))?;
        Ok((status, bytes))
    }

    /// POSTs `body` (JSON) and reads a JSON answer.
    pub fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &[u8],
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.post(path, body)?;
        decode(status, &bytes)
    }

    /// POSTs `body` (JSON); any 2xx answer is success.
    pub fn post_accepted(&self, path: &str, body: &[u8]) -> Result<(), ClientError> {
        let (status, bytes) = self.post(path, body)?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(status_error(status, &bytes))
    }

    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, bytes) = self.get(path, MAX_JSON_ANSWER_BYTES)?;
        decode(status, &bytes)
    }

    /// A piece from the origin: None when it is busy (503).
    pub fn get_piece(&self, path: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let (status, bytes) = self.get(path, MAX_PIECE_BYTES)?;
        match status {
            200 => Ok(Some(bytes)),
            503 => Ok(None),
            _ => Err(status_error(status, &bytes)),
        }
    }
}

fn decode<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<T, ClientError> {
    if !(200..300).contains(&status) {
        return Err(status_error(status, bytes));
    }
    serde_json::from_slice(bytes).map_err(|error| ClientError::Answer(error.to_string()))
}

fn status_error(status: u16, bytes: &[u8]) -> ClientError {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]);
    ClientError::Status {
        status,
        body: text.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_of_the_body_are_permanent() {
        let status = |status| ClientError::Status {
            status,
            body: String::new(),
        };
        assert!(status(400).is_permanent());
        assert!(status(413).is_permanent());
        for passing in [401, 403, 404, 429, 500, 503] {
            assert!(!status(passing).is_permanent(), "{passing}");
        }
        assert!(!ClientError::Transport("refused".into()).is_permanent());
    }
}
