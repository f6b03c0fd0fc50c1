//! Stops a run that can no longer do anything useful, instead of burning through the whole
//! file: when [`Breaker::ROWS`] rows in a row end with server or connection errors after their
//! retries (the service is down), or with the same non-retryable answer that is not about the
//! row itself (a retired or forbidden write call answers every row alike: see "The write
//! call's future" in the API notes).

use std::sync::Mutex;

use crate::api::ApiError;

/// What a failed row's answer says about the service, for counting rows in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signature {
    /// Server or connection errors that survived their retries.
    Outage,
    /// One non-retryable answer, by HTTP status and error code.
    Refusal {
        http_status: Option<u16>,
        code: Option<String>,
    },
}

/// Error codes about the row itself, never about the service: already exists, date in the
/// future, tenant not found, no relationship with the customer, invalid request input.
const PER_ROW_CODES: [&str; 5] = ["600061", "600002", "60003", "20002", "800002"];

fn is_per_row(error: &ApiError) -> bool {
    error
        .code
        .as_deref()
        .is_some_and(|c| PER_ROW_CODES.contains(&c))
}

/// Why the breaker stopped the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tripped(pub String);

/// Counts rows in a row that ended with the same kind of systemic failure.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    state: Mutex<Option<(Signature, u32)>>,
}

impl Breaker {
    pub(crate) const ROWS: u32 = 20;

    /// A row ended with an answer from a working service: a success, or an error about the
    /// row itself (already exists, bad date, unknown tenant, no relationship, bad input).
    pub(crate) fn healthy(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = None;
        }
    }

    /// A row ended on `error`; returns why the run must stop when the breaker trips.
    pub(crate) fn failed(&self, error: &ApiError) -> Option<Tripped> {
        if is_per_row(error) {
            self.healthy();
            return None;
        }
        let signature = if error.is_retryable() {
            Signature::Outage
        } else {
            Signature::Refusal {
                http_status: error.http_status,
                code: error.code.clone(),
            }
        };
        let mut state = self.state.lock().ok()?;
        let count = match state.as_mut() {
            Some((s, n)) if *s == signature => {
                *n = n.saturating_add(1);
                *n
            }
            _ => {
                *state = Some((signature.clone(), 1));
                1
            }
        };
        (count >= Self::ROWS).then(|| {
            Tripped(match signature {
                Signature::Outage => format!(
                    "{count} rows in a row ended with server or connection errors after their retries (last: {error}): Partner Center looks unavailable"
                ),
                Signature::Refusal { .. } => format!(
                    "{count} rows in a row were refused with the same answer ({error}): the call itself is refused, not the rows (a retired or forbidden endpoint, or missing permissions), so the run stopped instead of recording the same failure for every row"
                ),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> ApiError {
        ApiError::from_response(status, None, body.as_bytes())
    }

    #[test]
    fn twenty_identical_refusals_trip_the_breaker_and_name_the_answer() {
        let b = Breaker::default();
        let e = answer(403, r#"{"code":"999001","message":"Endpoint retired"}"#);
        for _ in 1..Breaker::ROWS {
            assert_eq!(b.failed(&e), None);
        }
        let tripped = b.failed(&e).expect("tripped");
        assert!(tripped.0.contains("999001"), "{tripped:?}");
        assert!(tripped.0.contains("403"), "{tripped:?}");
    }

    #[test]
    fn per_row_business_errors_never_count() {
        let b = Breaker::default();
        for body in [
            r#"{"code":600061}"#,
            r#"{"code":600002}"#,
            r#"{"code":60003}"#,
            r#"{"code":20002}"#,
            r#"{"code":800002}"#,
        ] {
            for _ in 0..Breaker::ROWS * 2 {
                assert_eq!(b.failed(&answer(400, body)), None);
            }
        }
    }

    #[test]
    fn a_different_answer_or_a_success_starts_the_count_again() {
        let b = Breaker::default();
        let x = answer(403, r#"{"code":"1"}"#);
        let y = answer(403, r#"{"code":"2"}"#);
        for _ in 1..Breaker::ROWS {
            assert_eq!(b.failed(&x), None);
        }
        assert_eq!(b.failed(&y), None);
        for _ in 1..Breaker::ROWS {
            assert_eq!(b.failed(&x), None);
        }
        b.healthy();
        assert_eq!(b.failed(&x), None);
    }

    #[test]
    fn outages_trip_whatever_their_status() {
        let b = Breaker::default();
        for i in 0..Breaker::ROWS - 1 {
            let status = if i % 2 == 0 { 503 } else { 500 };
            assert_eq!(b.failed(&answer(status, "")), None);
        }
        assert!(b.failed(&answer(502, "")).is_some());
    }
}
