//! Where a refresh token the authority rotated goes: Microsoft's guidance is to store the new
//! one where the old one lived, and a nightly job that never does dies within 90 days (or at
//! once, when the authority retires the old token on redemption).
//!
//! Given as `PARTNER_CENTER_REFRESH_TOKEN_FILE`, the file is replaced atomically (same
//! permissions) as soon as the new token arrives. Before anything is sent, the tool checks that
//! it can be: a folder that takes no new file (a read-only mount) is said at the start, not
//! discovered when the token is lost. A save that fails is tried again with the newest token
//! when the run ends; if that fails too, the run ends with an error line that says what the
//! next run will meet and what to do, and exits 4 (a run that aborted or was interrupted keeps
//! its 3 or 130). Given in the environment, the token cannot be written
//! back, and the log says so once.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use secrecy::{ExposeSecret, SecretString};

use crate::api::auth::ENV_REFRESH_TOKEN;
use crate::error::Exit;

/// Whether the token file holds the newest refresh token when the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenFile {
    /// Saved, or nothing to save (no rotation, or no file to save to).
    Current,
    /// A rotated token could not be saved: the file holds one the authority may refuse.
    Unsaved,
}

impl TokenFile {
    /// The run's exit code given what became of the token (see [`Exit::with_token_unsaved`]).
    pub(crate) fn exit(self, exit: Exit) -> Exit {
        match self {
            TokenFile::Current => exit,
            TokenFile::Unsaved => exit.with_token_unsaved(),
        }
    }
}

/// Keeps the rotated refresh tokens of one run.
#[derive(Debug)]
pub(crate) struct RefreshTokenKeeper {
    /// The file the configured token came from; `None` when it came from the environment.
    file: Option<PathBuf>,
    /// The newest rotated token when saving it failed, and why.
    unsaved: Mutex<Option<(SecretString, String)>>,
    warned: AtomicBool,
}

impl RefreshTokenKeeper {
    /// From the environment the credentials were read from: the file named by
    /// `PARTNER_CENTER_REFRESH_TOKEN_FILE`, unless `PARTNER_CENTER_REFRESH_TOKEN` (which wins)
    /// is set.
    pub(crate) fn from_env() -> Self {
        let file = std::env::var_os(ENV_REFRESH_TOKEN)
            .is_none()
            .then(|| std::env::var_os(format!("{ENV_REFRESH_TOKEN}_FILE")))
            .flatten()
            .map(PathBuf::from);
        Self::new(file)
    }

    pub fn new(file: Option<PathBuf>) -> Self {
        RefreshTokenKeeper {
            file,
            unsaved: Mutex::new(None),
            warned: AtomicBool::new(false),
        }
    }

    /// Whether a rotated token could be saved now; `Err` says why not. Creates and removes an
    /// empty file beside the token file, as saving does.
    pub(crate) fn check(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        crate::files::can_replace_keeping_mode(path).map_err(|e| {
            format!(
                "a refresh token the token authority rotates could not be saved to '{}' ({e}): the folder must let this user create a file beside it; otherwise the next run may start with a token that no longer works",
                path.display()
            )
        })
    }

    /// Takes a token the authority rotated: saves it, or keeps it for another try at the end.
    pub(crate) fn keep(&self, token: &SecretString) {
        let Some(path) = &self.file else {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the token authority rotated the refresh token; it is used for this run but not saved, since {ENV_REFRESH_TOKEN} came from the environment: give it as {ENV_REFRESH_TOKEN}_FILE so scheduled runs keep a working token"
                );
            }
            return;
        };
        let mut unsaved = self.unsaved();
        match save(path, token) {
            Ok(()) => {
                *unsaved = None;
                tracing::info!(
                    "the token authority rotated the refresh token: saved to '{}' for the next run",
                    path.display()
                );
            }
            Err(e) => {
                tracing::error!(
                    "the token authority rotated the refresh token, but it could not be saved to '{}' ({e}); it is tried again when the run ends",
                    path.display()
                );
                *unsaved = Some((token.clone(), e.to_string()));
            }
        }
    }

    /// At the end of the run: tries once more to save a rotated token that could not be
    /// saved. `Err` is what to tell the operator when it still cannot be.
    pub fn finish(&self) -> Result<(), String> {
        let (Some(path), Some((token, first))) = (&self.file, self.unsaved().take()) else {
            return Ok(());
        };
        match save(path, &token) {
            Ok(()) => {
                tracing::info!(
                    "the rotated refresh token was saved to '{}' on a second try, for the next run",
                    path.display()
                );
                Ok(())
            }
            Err(e) => Err(format!(
                "the token authority rotated the refresh token during this run, but it could not be saved to '{}' ({first}; at the end of the run: {e}). Every row was recorded, but the file still holds the old token, which the authority refuses (invalid_grant) once it retires it: the next run will be refused until the file is fixed. To fix it: make the file and its folder writable for this user (the file is replaced by a new one beside it), run the secure application model consent again and write the new refresh token to '{}'",
                path.display(),
                path.display()
            )),
        }
    }

    fn unsaved(&self) -> std::sync::MutexGuard<'_, Option<(SecretString, String)>> {
        // Every update is one assignment: a poisoned lock still holds a consistent value.
        self.unsaved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn save(path: &Path, token: &SecretString) -> std::io::Result<()> {
    let mut text = token.expose_secret().to_string();
    text.push('\n');
    crate::files::replace_keeping_mode(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_token_replaces_the_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh-token");
        std::fs::write(&path, "old-refresh-token\n").unwrap();
        let keeper = RefreshTokenKeeper::new(Some(path.clone()));
        assert_eq!(keeper.check(), Ok(()));
        keeper.keep(&SecretString::from("new-refresh-token-1"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "new-refresh-token-1\n"
        );
        keeper.keep(&SecretString::from("new-refresh-token-2"));
        assert_eq!(keeper.finish(), Ok(()));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "new-refresh-token-2\n"
        );
    }

    #[test]
    fn a_failed_save_is_tried_again_with_the_newest_token_when_the_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh-token");
        std::fs::write(&path, "old-refresh-token\n").unwrap();
        let keeper = RefreshTokenKeeper::new(Some(path.clone()));
        // The file is gone while the tokens rotate (moved away by a deployment, say) ...
        std::fs::remove_file(&path).unwrap();
        keeper.keep(&SecretString::from("new-refresh-token-1"));
        keeper.keep(&SecretString::from("new-refresh-token-2"));
        assert!(!path.exists());
        // ... and back before the run ends: the newest token is saved then.
        std::fs::write(&path, "old-refresh-token\n").unwrap();
        assert_eq!(keeper.finish(), Ok(()));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "new-refresh-token-2\n"
        );
        // Nothing is left to save.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(keeper.finish(), Ok(()));
    }

    #[test]
    fn a_token_that_cannot_be_saved_at_all_ends_the_run_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh-token");
        let keeper = RefreshTokenKeeper::new(Some(path.clone()));
        let refused = keeper.check().unwrap_err();
        assert!(refused.contains(&path.display().to_string()), "{refused}");
        keeper.keep(&SecretString::from("new-refresh-token-secret"));
        let said = keeper.finish().unwrap_err();
        for needed in [
            path.display().to_string().as_str(),
            "could not be saved",
            "invalid_grant",
            "consent again",
        ] {
            assert!(said.contains(needed), "{needed}: {said}");
        }
        assert!(!said.contains("new-refresh-token-secret"), "{said}");
        // Said once.
        assert_eq!(keeper.finish(), Ok(()));
    }

    #[test]
    fn a_token_from_the_environment_is_not_written_anywhere() {
        let keeper = RefreshTokenKeeper::new(None);
        assert_eq!(keeper.check(), Ok(()));
        keeper.keep(&SecretString::from("new-refresh-token"));
        assert_eq!(keeper.finish(), Ok(()));
    }
}
