//! Connecting to a NATS server or cluster.

use std::time::Duration;

use async_nats::jetstream;

use crate::error::ConnectError;

/// The environment variable that names the servers when no URL is given:
/// one URL or several separated by commas, e.g.
/// `nats://127.0.0.1:4222,nats://127.0.0.1:4223` (what `scripts/jetstream.sh
/// up` prints on its last line).
pub const URL_ENV: &str = "MAPSTATE_NATS_URL";

/// `connect(url)`—a `JetStream` context on the servers named by `url`, or by
/// the `MAPSTATE_NATS_URL` environment variable when `url` is `None`.
///
/// `url` is one server URL or several separated by commas; the client
/// connects to one of them and fails over to the others (and to those the
/// cluster announces) when that one goes away. There is no default server.
///
/// # Errors
///
/// [`ConnectError::NoUrl`] when neither names a server,
/// [`ConnectError::Connect`] when none of the servers answers within 5 s.
pub async fn connect(url: Option<&str>) -> Result<jetstream::Context, ConnectError> {
    let from_env;
    let url = if let Some(url) = url {
        url
    } else {
        from_env = std::env::var(URL_ENV).map_err(|_| ConnectError::NoUrl)?;
        &from_env
    };
    let client = connect_to(url).await?;
    Ok(jetstream::new(client))
}

/// `connect_to(urls)`—a plain NATS client on the comma-separated `urls`.
///
/// The client reconnects forever after a server goes away (its requests wait
/// or time out meanwhile); the first connection must succeed within 5 s.
///
/// # Errors
///
/// [`ConnectError::NoUrl`] for an empty list, [`ConnectError::Connect`]
/// for a malformed URL or when no server answers.
pub async fn connect_to(urls: &str) -> Result<async_nats::Client, ConnectError> {
    let urls: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(ConnectError::NoUrl);
    }
    async_nats::ConnectOptions::new()
        .name("mapstate-replicate")
        .connection_timeout(Duration::from_secs(5))
        .connect(urls.as_slice())
        .await
        .map_err(|source| ConnectError::Connect {
            urls: urls.join(","),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_list_names_no_server() {
        assert!(matches!(connect_to(" , ").await, Err(ConnectError::NoUrl)));
        assert!(matches!(connect(Some("")).await, Err(ConnectError::NoUrl)));
    }

    #[tokio::test]
    async fn a_malformed_url_is_a_connect_error_naming_it() {
        let err = connect_to("nats://127.0.0.1:notaport").await.unwrap_err();
        assert!(matches!(err, ConnectError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains("127.0.0.1:notaport"), "{err}");
    }
}
