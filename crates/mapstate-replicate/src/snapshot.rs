//! Snapshots: an object-store bucket.

use async_nats::jetstream::{self, object_store};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::Error;

/// An object-store bucket for snapshots of the state: each object is split
/// into 128 KiB chunks, stored in the bucket's stream (`OBJ_<bucket>`) with
/// the bucket's replication, and checked against its SHA-256 when read back.
/// Reads go through the stream's leader (no direct gets), so a
/// [`get`](Self::get) sees every [`put`](Self::put) that returned before it.
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
        if js.get_object_store(bucket).await.is_err() {
            js.create_object_store(object_store::Config {
                bucket: bucket.to_owned(),
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::new(format!("creating object store {bucket}"), e))?;
        }
        // async-nats creates the bucket's stream with `allow_direct`, and
        // then reads an object's metadata with a direct get, which any
        // replica answers, also one that lags behind the put just
        // acknowledged. Without it, the stream leader answers, and a get sees
        // every put acknowledged before it.
        let stream_name = format!("OBJ_{bucket}");
        let mut stream = js
            .get_stream(&stream_name)
            .await
            .map_err(|e| Error::new(format!("opening stream {stream_name}"), e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| Error::new(format!("reading stream {stream_name}"), e))?;
        if info.config.allow_direct {
            let mut config = info.config.clone();
            config.allow_direct = false;
            js.update_stream(config)
                .await
                .map_err(|e| Error::new(format!("turning off direct gets on {stream_name}"), e))?;
        }
        // Opened after the update: the store reads the stream's configuration once.
        let store = js
            .get_object_store(bucket)
            .await
            .map_err(|e| Error::new(format!("opening object store {bucket}"), e))?;
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
    /// async-nats reads the chunks through an ordered push consumer, and
    /// under load that read sometimes came back wrong ("wrong digest": in 2 of
    /// about 30 test runs with two clusters on two busy cores; a known class
    /// of client problem, not a stored corruption). The
    /// digest check catches it, and `get` reads the object again, 3 times at
    /// most.
    ///
    /// # Errors
    ///
    /// The object does not exist, a request failed, or the digest did not
    /// match 3 times.
    pub async fn get(&self, name: &str) -> Result<Vec<u8>, Error> {
        let mut attempt = 1;
        loop {
            let mut object = self
                .store
                .get(name)
                .await
                .map_err(|e| Error::new(format!("opening object {name}"), e))?;
            let mut bytes = Vec::with_capacity(object.info().size);
            match object.read_to_end(&mut bytes).await {
                Ok(_) => return Ok(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData && attempt < GET_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::new(
                        format!("reading object {name} (attempt {attempt})"),
                        e,
                    ));
                }
            }
        }
    }
}

/// How many times [`Snapshots::get`] reads an object whose digest did not match.
const GET_ATTEMPTS: u32 = 3;
