//! S3 in memory, for the tests that run Distributed Maps (`ItemReader`, `ResultWriter`) and S3
//! tasks: an [`ObjectStorage`] and the Task resources that read and write the same buckets.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use beacon_asl::{ObjectInfo, ObjectStorage, TaskFailure, TaskRegistry};
use chrono::{DateTime, Utc};
use md5::Digest;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Object {
    bytes: Vec<u8>,
    modified: DateTime<Utc>,
}

/// Buckets of objects. A bucket exists once it was created or written by [`MemoryS3::put_text`].
#[derive(Debug, Default, Clone)]
pub struct MemoryS3 {
    buckets: Arc<Mutex<BTreeMap<String, BTreeMap<String, Object>>>>,
}

fn etag(bytes: &[u8]) -> String {
    let digest = md5::Md5::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

impl MemoryS3 {
    pub fn create_bucket(&self, bucket: &str) {
        self.buckets.lock().unwrap().entry(bucket.to_string()).or_default();
    }

    pub fn put_text(&self, bucket: &str, key: &str, text: &str) {
        self.buckets
            .lock()
            .unwrap()
            .entry(bucket.to_string())
            .or_default()
            .insert(key.to_string(), Object { bytes: text.as_bytes().to_vec(), modified: Utc::now() });
    }

    pub fn text(&self, bucket: &str, key: &str) -> Option<String> {
        let buckets = self.buckets.lock().unwrap();
        let object = buckets.get(bucket)?.get(key)?;
        String::from_utf8(object.bytes.clone()).ok()
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.buckets.lock().unwrap().get(bucket).map(|b| b.keys().cloned().collect()).unwrap_or_default()
    }

    /// Registers S3 Task resources (`aws-sdk:s3:*` and the optimised `s3:*`) on this store.
    pub fn register_tasks(&self, registry: &mut TaskRegistry) {
        for prefix in ["arn:aws:states:::aws-sdk:s3:", "arn:aws:states:::s3:"] {
            let s3 = self.clone();
            registry.register_fn(format!("{prefix}putObject"), move |input: Value, _| {
                let s3 = s3.clone();
                async move {
                    let (bucket, key) = bucket_and_key(&input)?;
                    let body = match &input["Body"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let bytes = body.into_bytes();
                    let tag = etag(&bytes);
                    s3.put(&bucket, &key, bytes).await.map_err(|e| TaskFailure::new("S3.NoSuchBucketException", e))?;
                    Ok(json!({"ETag": tag}))
                }
            });
            let s3 = self.clone();
            registry.register_fn(format!("{prefix}getObject"), move |input: Value, _| {
                let s3 = s3.clone();
                async move {
                    let (bucket, key) = bucket_and_key(&input)?;
                    let bytes =
                        s3.get(&bucket, &key).await.map_err(|e| TaskFailure::new("S3.NoSuchKeyException", e))?;
                    Ok(json!({
                        "Body": String::from_utf8_lossy(&bytes),
                        "ContentLength": bytes.len(),
                        "ETag": etag(&bytes),
                    }))
                }
            });
            let s3 = self.clone();
            registry.register_fn(format!("{prefix}listObjectsV2"), move |input: Value, _| {
                let s3 = s3.clone();
                async move {
                    let bucket = input["Bucket"].as_str().unwrap_or_default().to_string();
                    let prefix = input["Prefix"].as_str().unwrap_or_default().to_string();
                    let objects =
                        s3.list(&bucket, &prefix).await.map_err(|e| TaskFailure::new("S3.NoSuchBucketException", e))?;
                    let contents: Vec<Value> =
                        objects.iter().map(|o| json!({"Key": o.key, "Size": o.size, "ETag": o.etag})).collect();
                    Ok(json!({"Contents": contents, "KeyCount": objects.len(), "Name": bucket, "Prefix": prefix}))
                }
            });
        }
    }
}

fn bucket_and_key(input: &Value) -> Result<(String, String), TaskFailure> {
    match (input["Bucket"].as_str(), input["Key"].as_str()) {
        (Some(b), Some(k)) => Ok((b.to_string(), k.to_string())),
        _ => Err(TaskFailure::new("S3.InvalidRequest", "Bucket and Key must be strings")),
    }
}

#[async_trait]
impl ObjectStorage for MemoryS3 {
    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        let buckets = self.buckets.lock().unwrap();
        let objects = buckets.get(bucket).ok_or_else(|| format!("The bucket '{bucket}' does not exist."))?;
        let object = objects.get(key).ok_or_else(|| format!("The key '{key}' does not exist in '{bucket}'."))?;
        Ok(object.bytes.clone())
    }

    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        let mut buckets = self.buckets.lock().unwrap();
        let objects = buckets.get_mut(bucket).ok_or_else(|| format!("The bucket '{bucket}' does not exist."))?;
        objects.insert(key.to_string(), Object { bytes, modified: Utc::now() });
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, String> {
        let buckets = self.buckets.lock().unwrap();
        let objects = buckets.get(bucket).ok_or_else(|| format!("The bucket '{bucket}' does not exist."))?;
        Ok(objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| ObjectInfo {
                key: k.clone(),
                size: o.bytes.len() as u64,
                etag: etag(&o.bytes),
                last_modified: o.modified,
            })
            .collect())
    }
}
