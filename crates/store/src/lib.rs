//! Object storage for BEACON: uploaded documents, units, unit results and reports.
//!
//! Everything the flow stores goes through [`Store`], a thin layer over the `object_store` crate,
//! so the same task code works on a local directory (the embedded engine) and on S3 (AWS).
//! [`keys`] holds the one place where object key layout is decided.

pub mod journal;
pub mod keys;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object '{key}' not found in the store")]
    NotFound { key: String },
    #[error("invalid object key '{key}': {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("cannot open the local store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("store error on '{key}': {source}")]
    Backend {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("object '{key}' is not valid JSON for its type: {source}")]
    Json {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One stored object, as a listing describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// The backend's entity tag (empty when it has none).
    pub etag: String,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// A handle on the object store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    description: String,
}

impl Store {
    /// A store in a local directory, created if missing.
    pub fn local(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Open { path: dir.display().to_string(), reason: e.to_string() })?;
        let fs = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| StoreError::Open { path: dir.display().to_string(), reason: e.to_string() })?;
        Ok(Store { inner: Arc::new(fs), description: format!("file://{}", dir.display()) })
    }

    /// A store in an S3 bucket: credentials and region as the AWS SDKs find them in the
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SESSION_TOKEN` on Lambda, `AWS_REGION`), `region`
    /// and `endpoint` overriding them (an S3-compatible server, or moto in tests; plain HTTP is
    /// allowed only for an endpoint given here).
    pub fn s3(bucket: &str, region: Option<&str>, endpoint: Option<&str>) -> Result<Store, StoreError> {
        Self::s3_from(object_store::aws::AmazonS3Builder::from_env(), bucket, region, endpoint)
    }

    /// [`Store::s3`] with credentials from `credentials` (e.g. the AWS SDK's provider chain,
    /// which also knows profiles and SSO) instead of the environment variables.
    pub fn s3_with_credentials(
        bucket: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
        credentials: object_store::aws::AwsCredentialProvider,
    ) -> Result<Store, StoreError> {
        let builder = object_store::aws::AmazonS3Builder::from_env().with_credentials(credentials);
        Self::s3_from(builder, bucket, region, endpoint)
    }

    fn s3_from(
        mut builder: object_store::aws::AmazonS3Builder,
        bucket: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<Store, StoreError> {
        builder = builder.with_bucket_name(bucket);
        if let Some(region) = region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        let s3 =
            builder.build().map_err(|e| StoreError::Open { path: format!("s3://{bucket}"), reason: e.to_string() })?;
        Ok(Store { inner: Arc::new(s3), description: format!("s3://{bucket}") })
    }

    /// Wrap any `object_store` implementation (S3, in-memory, ...).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, description: impl Into<String>) -> Store {
        Store { inner, description: description.into() }
    }

    /// Where the store lives, for messages (`file:///...`, `s3://bucket`).
    pub fn description(&self) -> &str {
        &self.description
    }

    fn path(key: &str) -> Result<ObjectPath, StoreError> {
        ObjectPath::parse(key).map_err(|e| StoreError::InvalidKey { key: key.to_string(), reason: e.to_string() })
    }

    /// Write bytes under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        let path = Self::path(key)?;
        self.inner
            .put(&path, PutPayload::from_bytes(bytes.into()))
            .await
            .map_err(|source| StoreError::Backend { key: key.to_string(), source })?;
        Ok(())
    }

    /// Read the bytes under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = Self::path(key)?;
        let result = self.inner.get(&path).await.map_err(|source| match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound { key: key.to_string() },
            source => StoreError::Backend { key: key.to_string(), source },
        })?;
        result.bytes().await.map_err(|source| StoreError::Backend { key: key.to_string(), source })
    }

    /// Remove the object under `key`; removing a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = Self::path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Backend { key: key.to_string(), source }),
        }
    }

    /// Whether an object exists under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = Self::path(key)?;
        match self.inner.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StoreError::Backend { key: key.to_string(), source }),
        }
    }

    /// The objects whose keys start with `prefix` (a key prefix, not only whole path segments),
    /// sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        use futures::TryStreamExt;
        // object_store lists by whole path segments: list the directory part, then filter.
        let dir = prefix.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
        let dir_path = if dir.is_empty() { None } else { Some(Self::path(dir)?) };
        let mut objects: Vec<ObjectMeta> = self
            .inner
            .list(dir_path.as_ref())
            .map_ok(|meta| ObjectMeta {
                key: meta.location.to_string(),
                size: meta.size,
                etag: meta.e_tag.unwrap_or_default(),
                last_modified: meta.last_modified,
            })
            .try_filter(|meta| futures::future::ready(meta.key.starts_with(prefix)))
            .try_collect()
            .await
            .map_err(|source| StoreError::Backend { key: prefix.to_string(), source })?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Serialise `value` as pretty JSON under `key`.
    pub async fn put_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json { key: key.to_string(), source })?;
        self.put(key, bytes).await
    }

    /// Read and deserialise the JSON under `key`.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<T, StoreError> {
        let bytes = self.get(key).await?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { key: key.to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_bytes_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        store.put("a/b.txt", Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(store.get("a/b.txt").await.unwrap(), Bytes::from_static(b"hello"));
        assert!(dir.path().join("a/b.txt").exists(), "stored as a real file");
        store.put_json("c.json", &serde_json::json!({"x": 1})).await.unwrap();
        let v: serde_json::Value = store.get_json("c.json").await.unwrap();
        assert_eq!(v["x"], 1);
    }

    #[tokio::test]
    async fn lists_by_key_prefix_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        for key in ["runs/b/2.json", "runs/a/1.json", "runs/ab.json", "other/x"] {
            store.put(key, Bytes::from_static(b"{}")).await.unwrap();
        }
        let keys = |objects: Vec<ObjectMeta>| objects.into_iter().map(|o| o.key).collect::<Vec<_>>();
        assert_eq!(keys(store.list("runs/a").await.unwrap()), vec!["runs/a/1.json", "runs/ab.json"]);
        assert_eq!(keys(store.list("runs/").await.unwrap()), vec!["runs/a/1.json", "runs/ab.json", "runs/b/2.json"]);
        assert_eq!(store.list("runs/a/").await.unwrap()[0].size, 2);
        assert!(store.list("none/").await.unwrap().is_empty());
        store.delete("runs/ab.json").await.unwrap();
        store.delete("runs/ab.json").await.unwrap();
        assert!(!store.exists("runs/ab.json").await.unwrap());
    }

    #[tokio::test]
    async fn missing_objects_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        assert!(!store.exists("nope").await.unwrap());
        match store.get("nope").await {
            Err(StoreError::NotFound { key }) => assert_eq!(key, "nope"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rejects_keys_that_escape() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        assert!(matches!(store.put("../evil", Bytes::new()).await, Err(StoreError::InvalidKey { .. })));
    }
}
