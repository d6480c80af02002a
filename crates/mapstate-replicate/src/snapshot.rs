//! Snapshots: an object-store bucket.

use async_nats::jetstream::{self, object_store};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::Error;

/// An object-store bucket for snapshots of the state: each object is split
/// into 128 KiB chunks, stored in the bucket's stream (`OBJ_<bucket>`) with
/// the bucket's replication, and checked against its SHA-256 when read back.
#[derive(Clone)]
pub struct Snapshots {
    store: object_store::ObjectStore,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots").finish_non_exhaustive()
    }
}

impl Snapshots {
    /// `Snapshots::create(js, bucket, replicas)`—the bucket, created if
    /// missing (an object store is a stream `OBJ_<bucket>`).
    ///
    /// # Errors
    ///
    /// The request failed.
    pub async fn create(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Snapshots, Error> {
        let store = match js.get_object_store(bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: bucket.to_owned(),
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::new(format!("creating object store {bucket}"), e))?,
        };
        Ok(Snapshots { store })
    }

    /// `put(name, data)`—stores everything `data` yields as the object
    /// `name`, replacing an older object of that name; returns its size. The
    /// chunks are published one at a time, each waiting for its ack.
    ///
    /// # Errors
    ///
    /// Reading `data` or a publish failed.
    pub async fn put(&self, name: &str, data: &mut (impl AsyncRead + Unpin)) -> Result<u64, Error> {
        let info = self
            .store
            .put(name, data)
            .await
            .map_err(|e| Error::new(format!("storing object {name}"), e))?;
        Ok(info.size as u64)
    }

    /// `get(name)`—the object's bytes, checked against the SHA-256 digest
    /// stored with it.
    ///
    /// # Errors
    ///
    /// The object does not exist, a request failed, or the digest does not
    /// match.
    pub async fn get(&self, name: &str) -> Result<Vec<u8>, Error> {
        let mut object = self
            .store
            .get(name)
            .await
            .map_err(|e| Error::new(format!("opening object {name}"), e))?;
        let mut bytes = Vec::with_capacity(object.info().size);
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::new(format!("reading object {name}"), e))?;
        Ok(bytes)
    }
}
