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

    /// Whether an object exists under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = Self::path(key)?;
        match self.inner.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StoreError::Backend { key: key.to_string(), source }),
        }
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
