//! Where the session is kept between launches: the [`TokenStore`] foreign trait (the
//! Keychain on iOS, Keystore-backed storage on Android), plus an in-memory store for
//! tests and a file store for the demo and CLI.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Why the app's token store failed. `Unavailable` means "try again later" (e.g. the
/// iOS keychain is locked during prewarming): Tether keeps the state `Unknown` and never
/// signs the user out because of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum TokenStoreError {
    /// The store cannot be used right now (locked, busy, failing). Retried later.
    #[error("token store unavailable: {detail}")]
    Unavailable {
        /// What failed.
        detail: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for TokenStoreError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        TokenStoreError::Unavailable { detail: e.reason }
    }
}

/// Secure storage for the session, implemented by the app. The value is an opaque string
/// (it contains the tokens): store it as one secret item. Called off the main thread.
#[uniffi::export(with_foreign)]
pub trait TokenStore: Send + Sync {
    /// The saved value, or `None` if there is none.
    fn load(&self) -> Result<Option<String>, TokenStoreError>;
    /// Replaces the saved value.
    fn save(&self, value: String) -> Result<(), TokenStoreError>;
    /// Removes the saved value.
    fn clear(&self) -> Result<(), TokenStoreError>;
}

/// Keeps the session in memory only (tests, previews, apps that want no persistence).
#[derive(Default)]
pub struct InMemoryTokenStore(Mutex<Option<String>>);

impl TokenStore for InMemoryTokenStore {
    fn load(&self) -> Result<Option<String>, TokenStoreError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
    fn save(&self, value: String) -> Result<(), TokenStoreError> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }
    fn clear(&self) -> Result<(), TokenStoreError> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }
}

/// Keeps the session in a file (mode 0600, replaced atomically). For the demo and
/// command-line tools only: on a phone, use the platform's secure storage.
pub struct FileTokenStore(PathBuf);

impl TokenStore for FileTokenStore {
    fn load(&self) -> Result<Option<String>, TokenStoreError> {
        match std::fs::read_to_string(&self.0) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
    fn save(&self, value: String) -> Result<(), TokenStoreError> {
        let tmp = self.0.with_extension("tmp");
        write_private(&tmp, value.as_bytes()).map_err(unavailable)?;
        std::fs::rename(&tmp, &self.0).map_err(unavailable)
    }
    fn clear(&self) -> Result<(), TokenStoreError> {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(unavailable(e)),
            _ => Ok(()),
        }
    }
}

fn unavailable(e: std::io::Error) -> TokenStoreError {
    TokenStoreError::Unavailable {
        detail: e.to_string(),
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A token store that keeps the session in memory only.
#[uniffi::export]
pub fn in_memory_token_store() -> Arc<dyn TokenStore> {
    Arc::new(InMemoryTokenStore::default())
}

/// A token store backed by the file at `path` (demo and CLI use; not for phones).
#[uniffi::export]
pub fn file_token_store(path: String) -> Arc<dyn TokenStore> {
    Arc::new(FileTokenStore(PathBuf::from(path)))
}
