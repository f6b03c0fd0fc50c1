//! How long a minted access token lives: the authority's `expires_in`, read whatever its
//! form, and kept within [`MIN_TOKEN_LIFETIME`]..=[`MAX_TOKEN_LIFETIME`].

use std::time::Duration;

use serde_json::Value;

use crate::api::error::printable;

/// The longest access-token lifetime believed: Entra ID's maximum configurable lifetime
/// (one day). An authority answering more (1e30 s, a 20-digit number) is wrong or hostile;
/// the token is renewed on this schedule instead, and a 401 renews it earlier anyway.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);
/// The shortest lifetime believed: an answer of 0 or less would have every call renew.
pub(crate) const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1);
/// The lifetime assumed when the answer gives none, or one that cannot be read: what Entra
/// ID usually issues.
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// How long a minted token lives, and what was odd about the authority's `expires_in`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lifetime {
    pub(crate) duration: Duration,
    pub(crate) note: LifetimeNote,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LifetimeNote {
    /// Used as given.
    AsGiven,
    /// No `expires_in`: [`DEFAULT_TOKEN_LIFETIME`] assumed.
    Missing,
    /// `expires_in` could not be read (shown, escaped): [`DEFAULT_TOKEN_LIFETIME`] assumed.
    Unreadable(String),
    /// More than [`MAX_TOKEN_LIFETIME`] (the value as sent, escaped): capped.
    Capped(String),
    /// Less than [`MIN_TOKEN_LIFETIME`] (the value as sent, escaped): raised to it.
    Floored(String),
}

/// Reads `expires_in` (seconds as a number or a string; the v1 endpoint sends strings) and
/// keeps it within [`MIN_TOKEN_LIFETIME`]..=[`MAX_TOKEN_LIFETIME`], without ever panicking
/// on what the authority sends (huge integers, 1e30, negatives, text).
pub(crate) fn token_lifetime(expires_in: Option<&Value>) -> Lifetime {
    let shown = |raw: &str| crate::domain::shorten(&printable(raw));
    let (secs, raw): (Option<f64>, String) = match expires_in {
        None | Some(Value::Null) => {
            return Lifetime {
                duration: DEFAULT_TOKEN_LIFETIME,
                note: LifetimeNote::Missing,
            };
        }
        Some(Value::Number(n)) => (
            n.as_u64()
                .map(|u| u as f64)
                .or_else(|| n.as_i64().map(|i| i as f64))
                .or_else(|| n.as_f64()),
            n.to_string(),
        ),
        Some(Value::String(s)) => (s.trim().parse::<f64>().ok(), s.clone()),
        Some(other) => (None, other.to_string()),
    };
    let Some(secs) = secs.filter(|s| !s.is_nan()) else {
        return Lifetime {
            duration: DEFAULT_TOKEN_LIFETIME,
            note: LifetimeNote::Unreadable(shown(&raw)),
        };
    };
    if secs > MAX_TOKEN_LIFETIME.as_secs_f64() {
        return Lifetime {
            duration: MAX_TOKEN_LIFETIME,
            note: LifetimeNote::Capped(shown(&raw)),
        };
    }
    if secs < MIN_TOKEN_LIFETIME.as_secs_f64() {
        return Lifetime {
            duration: MIN_TOKEN_LIFETIME,
            note: LifetimeNote::Floored(shown(&raw)),
        };
    }
    Lifetime {
        // Within 1..=86400 s: the conversion cannot fail; the fallback only keeps it panic-free.
        duration: Duration::try_from_secs_f64(secs).unwrap_or(DEFAULT_TOKEN_LIFETIME),
        note: LifetimeNote::AsGiven,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::authority::TokenAnswer;
    use super::*;

    #[test]
    fn expires_in_may_be_a_string_or_a_number() {
        let a: TokenAnswer =
            serde_json::from_str(r#"{"access_token":"a","expires_in":"3599"}"#).unwrap();
        let b: TokenAnswer =
            serde_json::from_str(r#"{"access_token":"a","expires_in":3599}"#).unwrap();
        for answer in [a, b] {
            assert_eq!(
                token_lifetime(answer.expires_in.as_ref()),
                Lifetime {
                    duration: Duration::from_secs(3599),
                    note: LifetimeNote::AsGiven
                }
            );
        }
    }

    fn lifetime_of(json: &str) -> Lifetime {
        let answer: TokenAnswer = serde_json::from_str(json).unwrap();
        token_lifetime(answer.expires_in.as_ref())
    }

    #[test]
    fn absurd_lifetimes_are_capped_at_a_day_and_floored_at_a_second() {
        for json in [
            r#"{"expires_in":1e30}"#,
            r#"{"expires_in":99999999999999999999}"#,
            r#"{"expires_in":"99999999999999999999"}"#,
            r#"{"expires_in":"1e30"}"#,
            r#"{"expires_in":18446744073709551615}"#,
            r#"{"expires_in":86401}"#,
        ] {
            let l = lifetime_of(json);
            assert_eq!(l.duration, MAX_TOKEN_LIFETIME, "{json}");
            assert!(matches!(l.note, LifetimeNote::Capped(_)), "{json}");
        }
        assert_eq!(
            lifetime_of(r#"{"expires_in":86400}"#).note,
            LifetimeNote::AsGiven
        );
        for json in [
            r#"{"expires_in":0}"#,
            r#"{"expires_in":-5}"#,
            r#"{"expires_in":"-99999999999999999999"}"#,
            r#"{"expires_in":0.2}"#,
        ] {
            let l = lifetime_of(json);
            assert_eq!(l.duration, MIN_TOKEN_LIFETIME, "{json}");
            assert!(matches!(l.note, LifetimeNote::Floored(_)), "{json}");
        }
        assert_eq!(lifetime_of(r#"{}"#).note, LifetimeNote::Missing);
        assert_eq!(
            lifetime_of(r#"{"expires_in":null}"#).note,
            LifetimeNote::Missing
        );
        for json in [
            r#"{"expires_in":"soon"}"#,
            r#"{"expires_in":true}"#,
            r#"{"expires_in":"NaN"}"#,
            r#"{"expires_in":[1]}"#,
        ] {
            let l = lifetime_of(json);
            assert_eq!(l.duration, DEFAULT_TOKEN_LIFETIME, "{json}");
            assert!(matches!(l.note, LifetimeNote::Unreadable(_)), "{json}");
        }
        // Whatever the authority sends is shown escaped in the note.
        let l = lifetime_of(r#"{"expires_in":"1\n\u001b[2J"}"#);
        assert_eq!(l.note, LifetimeNote::Unreadable("1\\n\\u{1b}[2J".into()));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..Default::default() })]

        /// Whatever number the authority sends, as a number or as a string, the lifetime
        /// believed is within the bounds, and it is the number itself (to the second) exactly
        /// when that is within them.
        #[test]
        fn any_expires_in_gives_a_lifetime_within_the_bounds(
            secs in prop_oneof![
                proptest::num::f64::ANY,
                (-10.0f64..100_000.0),
                (0u32..90_000).prop_map(f64::from),
            ],
            as_string: bool,
        ) {
            let value = if as_string {
                Value::String(secs.to_string())
            } else {
                serde_json::Number::from_f64(secs).map_or(Value::Null, Value::Number)
            };
            let lifetime = token_lifetime(Some(&value));
            prop_assert!(lifetime.duration >= MIN_TOKEN_LIFETIME, "{value}: {lifetime:?}");
            prop_assert!(lifetime.duration <= MAX_TOKEN_LIFETIME, "{value}: {lifetime:?}");
            let within = (MIN_TOKEN_LIFETIME.as_secs_f64()..=MAX_TOKEN_LIFETIME.as_secs_f64())
                .contains(&secs);
            if within && !value.is_null() {
                prop_assert_eq!(&lifetime.note, &LifetimeNote::AsGiven, "{}", value);
                prop_assert!((lifetime.duration.as_secs_f64() - secs).abs() < 1e-6, "{value}: {lifetime:?}");
            } else {
                prop_assert!(lifetime.note != LifetimeNote::AsGiven, "{value}: {lifetime:?}");
            }
        }
    }
}
