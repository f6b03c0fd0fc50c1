//! What must never be shown: the configured credentials and the tokens minted or rotated
//! from them. Server text (a service or authority that echoes what it was sent) is scrubbed
//! of them before it becomes part of an error.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use secrecy::{ExposeSecret, SecretString};

/// Credentials shorter than this are not scrubbed from server text: replacing every "abc" in
/// a message would garble it, and real tokens and secrets are far longer.
const MIN_SCRUBBED_LEN: usize = 8;
/// Minted access tokens and rotated refresh tokens remembered for scrubbing (the current ones
/// and a few before them, which requests in flight may still carry).
const SCRUB_HISTORY: usize = 8;

/// Every credential a token source knows: the configured ones for the whole run, and the
/// latest [`SCRUB_HISTORY`] minted access tokens and rotated refresh tokens.
#[derive(Default)]
pub(crate) struct Secrets {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// The configured credentials: kept for the whole run.
    fixed: Vec<SecretString>,
    /// Minted access tokens and rotated refresh tokens, newest last.
    recent: VecDeque<SecretString>,
}

impl Secrets {
    /// Secrets that `fixed`, the configured credentials, start with.
    pub fn new(fixed: Vec<SecretString>) -> Self {
        Secrets {
            held: Mutex::new(Held {
                fixed,
                recent: VecDeque::new(),
            }),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every update is a push or a pop: a poisoned lock still holds a usable list.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A minted access token or a rotated refresh token, from now on scrubbed too.
    pub(crate) fn remember(&self, secret: SecretString) {
        let mut held = self.held();
        held.recent.push_back(secret);
        while held.recent.len() > SCRUB_HISTORY {
            held.recent.pop_front();
        }
    }

    /// `text` with every credential known replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let held = self.held();
        let mut out = text.to_string();
        for secret in held.fixed.iter().chain(held.recent.iter()) {
            let secret = secret.expose_secret();
            if secret.len() >= MIN_SCRUBBED_LEN && out.contains(secret) {
                out = out.replace(secret, "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Text around a secret: printable, and never holding the characters secrets are made of,
    /// so the secret appears exactly where it was put.
    fn surrounding() -> impl Strategy<Value = String> {
        "[ :;,!?()\\[\\]{}<>\"'|]{0,12}"
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// A configured secret long enough to be worth it is scrubbed wherever it stands and
        /// however often; a shorter one is left, so that a message is never garbled.
        #[test]
        fn a_configured_secret_is_scrubbed_wherever_it_stands(
            secret in "[A-Za-z0-9._~+/=-]{1,40}",
            before in surrounding(),
            between in surrounding(),
            after in surrounding(),
        ) {
            let secrets = Secrets::new(vec![SecretString::from(secret.clone())]);
            let text = format!("{before}{secret}{between}{secret}{after}");
            let shown = secrets.scrub(&text);
            if secret.len() >= MIN_SCRUBBED_LEN {
                prop_assert!(!shown.contains(&secret), "{shown}");
                prop_assert_eq!(shown, format!("{before}***{between}***{after}"));
            } else {
                prop_assert_eq!(shown, text);
            }
        }

        /// Of the tokens remembered, the latest SCRUB_HISTORY are scrubbed and older ones are
        /// not; the configured secrets are scrubbed whatever came after them.
        #[test]
        fn the_latest_tokens_and_every_configured_secret_are_scrubbed(remembered in 0usize..20) {
            let fixed = "configured-secret-value";
            let secrets = Secrets::new(vec![SecretString::from(fixed)]);
            let tokens: Vec<String> = (0..remembered).map(|i| format!("minted-token-{i:04}")).collect();
            for token in &tokens {
                secrets.remember(SecretString::from(token.clone()));
            }
            prop_assert_eq!(secrets.scrub(fixed), "***");
            let kept_from = remembered.saturating_sub(SCRUB_HISTORY);
            for (i, token) in tokens.iter().enumerate() {
                let want = if i >= kept_from { "***" } else { token.as_str() };
                prop_assert_eq!(secrets.scrub(token), want, "token {} of {}", i, remembered);
            }
        }
    }
}
