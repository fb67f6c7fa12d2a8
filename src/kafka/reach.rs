//! Whether the cluster can be reached at all, asked before any Kafka client
//! is made. librdkafka retries an unreachable address quietly and reports
//! only a timeout much later (after 30 s, or with a stream of log lines), so
//! a mistyped `--brokers` would look like a hang. A plain TCP connect to each
//! bootstrap address answers within [`REACH_TIMEOUT`] and names the cause.

use super::TransportError;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one bootstrap address may take to accept a connection.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// `Ok` once any of the comma-separated bootstrap `brokers` accepts a TCP
/// connection (tried at once, so the wait is at most [`REACH_TIMEOUT`]);
/// otherwise an error naming every address and why it failed.
pub async fn reach(brokers: &str) -> Result<(), TransportError> {
    let addresses: Vec<String> = brokers
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addresses.is_empty() {
        return Err(TransportError::Unreachable {
            brokers: brokers.to_owned(),
            cause: "no broker address given".into(),
        });
    }
    let mut attempts = tokio::task::JoinSet::new();
    for address in addresses {
        attempts.spawn(async move {
            match tokio::time::timeout(REACH_TIMEOUT, TcpStream::connect(address.as_str())).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!("{address}: {err}")),
                Err(_) => Err(format!(
                    "{address}: no answer within {} s",
                    REACH_TIMEOUT.as_secs()
                )),
            }
        });
    }
    let mut causes = Vec::new();
    while let Some(result) = attempts.join_next().await {
        match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(cause)) => causes.push(cause),
            Err(err) => causes.push(format!("the attempt failed: {err}")),
        }
    }
    causes.sort();
    Err(TransportError::Unreachable {
        brokers: brokers.to_owned(),
        cause: causes.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_closed_port_is_named_with_its_cause() {
        // Bind and drop, so the port is (almost surely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let err = reach(&address).await.unwrap_err().to_string();
        assert!(err.contains(&address), "{err}");
        assert!(err.to_lowercase().contains("refused"), "{err}");
    }

    #[actix_rt::test]
    async fn one_open_address_is_enough() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        reach(&format!("127.0.0.1:1,{open}")).await.unwrap();
    }
}
