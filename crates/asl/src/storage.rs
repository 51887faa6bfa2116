//! Object storage for the Distributed Map's `ItemReader` and `ResultWriter`, which on AWS read
//! and write S3. The embedder decides what a bucket is (BEACON maps buckets onto its store).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// One object, as `ListObjectsV2` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its entity tag, as S3 shows it (usually a quoted hex digest).
    pub etag: String,
    /// When it was last written.
    pub last_modified: DateTime<Utc>,
}

/// Buckets of objects: what `arn:aws:states:::s3:getObject`, `...:s3:listObjectsV2` (in an
/// `ItemReader`) and `...:s3:putObject` (in a `ResultWriter`) reach.
///
/// Errors are plain messages: they become the cause of `States.ItemReaderFailed` or
/// `States.ResultWriterFailed`, so say what failed on which object.
#[async_trait]
pub trait ObjectStorage: Send + Sync {
    /// The bytes of `key` in `bucket`.
    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String>;
    /// Writes (or replaces) `key` in `bucket`.
    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), String>;
    /// The objects of `bucket` whose keys start with `prefix`, in key order.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, String>;
}
