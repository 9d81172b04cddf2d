//! The retry policy of async calls, `lf_core.asynccalls.policy` in Rust: retryable 408, 429, 5xx; backoff
//! `backoff * 2^(n-1)` capped, plus up to 20 % jitter; `maxAttempts` in total; `maxAge`.

use crate::settings::AsyncSettings;

/// `lf_core.asynccalls.policy.AsyncPolicy`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub max_attempts: u32,
    pub backoff_s: f64,
    pub max_backoff_s: f64,
    pub jitter: f64,
    pub max_age_s: Option<f64>,
}

impl Policy {
    /// The policy of the `LF_ASYNC_*` settings: backoff capped at 300 s, up to 20 % jitter.
    pub(super) fn from_settings(settings: &AsyncSettings) -> Self {
        Self {
            max_attempts: settings.max_attempts,
            backoff_s: settings.backoff.as_secs_f64(),
            max_backoff_s: 300.0,
            jitter: 0.2,
            max_age_s: (!settings.max_age.is_zero()).then_some(settings.max_age.as_secs_f64()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Run,
    Done,
    Retry { delay_s: f64 },
    Dead { reason: String },
}

/// 408, 429 and every 5xx retry; any other 4xx would fail the same way again.
pub fn is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// Seconds to wait after failed attempt `attempt` (1-based) before the next one; `rand` in [0, 1).
pub fn backoff_s(attempt: u32, policy: &Policy, rand: f64) -> f64 {
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let base = (policy.backoff_s * 2f64.powi(exponent)).min(policy.max_backoff_s);
    base * (1.0 + policy.jitter * rand)
}

/// May delivery number `attempt` run? A delivery past `max_attempts` is a replica that died on the last one.
pub fn before_attempt(attempt: u32, submitted_at: f64, now: f64, policy: &Policy) -> Decision {
    if attempt > policy.max_attempts {
        return Decision::Dead {
            reason: format!(
                "the replica stopped during attempt {} of {}",
                attempt - 1,
                policy.max_attempts
            ),
        };
    }
    if let Some(max_age) = policy.max_age_s {
        if now - submitted_at > max_age {
            return Decision::Dead {
                reason: format!(
                    "older than maxAge ({} s) before attempt {attempt}",
                    g(max_age)
                ),
            };
        }
    }
    Decision::Run
}

/// What follows attempt `attempt` that answered `status`.
pub fn after_attempt(
    attempt: u32,
    status: u16,
    submitted_at: f64,
    now: f64,
    policy: &Policy,
    rand: f64,
) -> Decision {
    if status < 400 {
        return Decision::Done;
    }
    if !is_retryable(status) {
        return Decision::Dead {
            reason: format!("status {status} is not retryable"),
        };
    }
    if attempt >= policy.max_attempts {
        return Decision::Dead {
            reason: format!(
                "status {status} on the last of {} attempts",
                policy.max_attempts
            ),
        };
    }
    let delay_s = backoff_s(attempt, policy, rand);
    if let Some(max_age) = policy.max_age_s {
        if now + delay_s - submitted_at > max_age {
            return Decision::Dead {
                reason: format!(
                    "status {status}; the next attempt would pass maxAge ({} s)",
                    g(max_age)
                ),
            };
        }
    }
    Decision::Retry { delay_s }
}

/// Python's `{x:g}` for the values a duration takes (integers without `.0`, else the shortest form).
fn g(value: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_settings(&AsyncSettings::from_env(|_| None, 16).unwrap())
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_up() {
        let p = policy();
        assert!((backoff_s(1, &p, 0.0) - 1.0).abs() < 1e-9);
        assert!((backoff_s(3, &p, 0.0) - 4.0).abs() < 1e-9);
        assert!((backoff_s(2, &p, 0.999) - 2.0 * 1.1998).abs() < 1e-3);
        assert!((backoff_s(40, &p, 0.0) - 300.0).abs() < 1e-9);
    }

    #[test]
    fn decisions_match_lf_core_policy() {
        let p = policy();
        assert_eq!(after_attempt(1, 200, 0.0, 1.0, &p, 0.5), Decision::Done);
        assert_eq!(after_attempt(1, 302, 0.0, 1.0, &p, 0.5), Decision::Done);
        assert_eq!(
            after_attempt(1, 404, 0.0, 1.0, &p, 0.5),
            Decision::Dead {
                reason: "status 404 is not retryable".into()
            }
        );
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(
                after_attempt(1, status, 0.0, 1.0, &p, 0.5),
                Decision::Retry { .. }
            ));
        }
        assert_eq!(
            after_attempt(3, 500, 0.0, 1.0, &p, 0.5),
            Decision::Dead {
                reason: "status 500 on the last of 3 attempts".into()
            }
        );
        assert_eq!(before_attempt(3, 0.0, 1.0, &p), Decision::Run);
        assert_eq!(
            before_attempt(4, 0.0, 1.0, &p),
            Decision::Dead {
                reason: "the replica stopped during attempt 3 of 3".into()
            }
        );
        let aged = Policy {
            max_age_s: Some(30.0),
            ..p
        };
        assert_eq!(
            before_attempt(2, 0.0, 31.0, &aged),
            Decision::Dead {
                reason: "older than maxAge (30 s) before attempt 2".into()
            }
        );
        assert_eq!(
            after_attempt(1, 503, 0.0, 29.5, &aged, 0.0),
            Decision::Dead {
                reason: "status 503; the next attempt would pass maxAge (30 s)".into()
            }
        );
        assert_eq!(g(2.5), "2.5");
    }
}
