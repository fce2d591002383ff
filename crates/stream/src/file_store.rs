//! The standalone checkpoint store: one JSON file, replaced atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::checkpoint::{self, Checkpoint, CheckpointError, CheckpointStore};

/// Keeps progress in a file. A save writes a temporary file beside it, syncs it
/// and renames it over the old one, so a crash leaves either the old or the new
/// document, never half of one.
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    path: PathBuf,
}

impl FileCheckpointStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileCheckpointStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".to_owned());
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // The rename is durable only once the directory entry is.
            std::fs::File::open(&dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[async_trait]
impl CheckpointStore for FileCheckpointStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => checkpoint::decode(&self.location(), &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckpointError::Read {
                location: self.location(),
                source,
            }),
        }
    }

    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let bytes = checkpoint::encode(checkpoint);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || Self::write_atomically(&path, &bytes))
            .await
            .map_err(|e| CheckpointError::Backend {
                location: self.location(),
                reason: format!("the write task failed: {e}"),
            })?
            .map_err(|source| CheckpointError::Write {
                location: self.location(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SequenceNumber, ShardId};

    fn checkpoint() -> Checkpoint {
        let mut checkpoint = Checkpoint::new(
            "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/label"
                .parse()
                .expect("valid"),
        );
        checkpoint.advance(
            &ShardId::new("shardId-1"),
            &SequenceNumber::parse("000000000000000000042").expect("digits"),
        );
        checkpoint
    }

    #[tokio::test]
    async fn missing_file_means_never_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileCheckpointStore::new(dir.path().join("none.json"));
        assert_eq!(store.load().await.expect("loads"), None);
    }

    #[tokio::test]
    async fn save_then_load_returns_the_same_progress_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileCheckpointStore::new(dir.path().join("cp.json"));
        store.save(&checkpoint()).await.expect("saves");
        store.save(&checkpoint()).await.expect("replaces");
        assert_eq!(store.load().await.expect("loads"), Some(checkpoint()));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cp.json")]);
    }

    #[tokio::test]
    async fn corrupt_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp.json");
        std::fs::write(&path, b"{\"version\":1,\"streamArn\":\"arn:aws").expect("writes");
        let err = FileCheckpointStore::new(&path)
            .load()
            .await
            .expect_err("corrupt");
        assert!(err.to_string().contains("is corrupt"), "{err}");
    }
}
