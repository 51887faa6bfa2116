//! The store as the state machine's S3 bucket: what the distributed Map's `ItemReader` and
//! `ResultWriter` read and write on the embedded engine.
//!
//! The definition names one bucket (`${BucketName}`, `Config::bucket`); on AWS it is the stack's
//! S3 bucket, locally it is the store under the data directory. Any other bucket is an error
//! that names both, so a definition edited to point elsewhere fails clearly instead of
//! writing into the wrong place.

use async_trait::async_trait;
use beacon_asl::{ObjectInfo, ObjectStorage};
use beacon_store::{Store, StoreError};

/// One bucket, backed by a [`Store`].
pub struct StoreBucket {
    bucket: String,
    store: Store,
}

impl StoreBucket {
    pub fn new(bucket: impl Into<String>, store: Store) -> StoreBucket {
        StoreBucket { bucket: bucket.into(), store }
    }

    fn check(&self, bucket: &str) -> Result<(), String> {
        if bucket == self.bucket {
            Ok(())
        } else {
            Err(format!(
                "bucket '{bucket}' is not this store's bucket '{}' ({}); set `bucket` in beacon.toml to the name the state machine uses",
                self.bucket,
                self.store.description()
            ))
        }
    }
}

fn describe(e: StoreError) -> String {
    match e {
        StoreError::NotFound { key } => format!("The specified key does not exist: {key}"),
        other => other.to_string(),
    }
}

#[async_trait]
impl ObjectStorage for StoreBucket {
    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        self.check(bucket)?;
        self.store.get(key).await.map(|b| b.to_vec()).map_err(describe)
    }

    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        self.check(bucket)?;
        self.store.put(key, bytes).await.map_err(describe)
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, String> {
        self.check(bucket)?;
        let objects = self.store.list(prefix).await.map_err(describe)?;
        Ok(objects
            .into_iter()
            .map(|o| ObjectInfo { key: o.key, size: o.size, etag: o.etag, last_modified: o.last_modified })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_and_writes_its_own_bucket_only() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = StoreBucket::new("beacon-local", Store::local(dir.path()).unwrap());
        bucket.put("beacon-local", "a/b.json", b"[1]".to_vec()).await.unwrap();
        assert_eq!(bucket.get("beacon-local", "a/b.json").await.unwrap(), b"[1]");
        assert_eq!(bucket.list("beacon-local", "a/").await.unwrap()[0].key, "a/b.json");
        let err = bucket.get("elsewhere", "a/b.json").await.unwrap_err();
        assert!(err.contains("'elsewhere'") && err.contains("'beacon-local'"), "{err}");
        assert!(bucket.get("beacon-local", "missing").await.unwrap_err().contains("does not exist"));
    }
}
