//! Unit tests of the bridge: reconnect pauses.

use super::*;

/// Losing the link soon after it came up backs off further; after it stayed up a
/// while, the pauses start over.
#[test]
fn only_a_link_that_stayed_up_starts_the_pauses_over() {
    let config = crate::sync::redis::config::Config::parse("redis://127.0.0.1:1").unwrap();
    let shared = Shared::new(config);
    let mut state = shared.state();
    for lost in 1..=4 {
        state.phase = Phase::Up;
        state.up_since = Some(Instant::now());
        drop(go_down(&shared, &mut state, None, "lost".into()));
        assert_eq!(state.attempt, lost);
    }
    let up = Instant::now();
    assert!(!stayed_up(None, up));
    assert!(!stayed_up(Some(up), up + STABLE_UP / 2));
    assert!(stayed_up(Some(up), up + STABLE_UP));
}

#[test]
fn backoff_grows_to_a_cap_with_jitter() {
    for attempt in 0..40 {
        let base = Duration::from_millis(50)
            .saturating_mul(1u32 << attempt.min(10))
            .min(MAX_BACKOFF);
        let pause = backoff(attempt);
        assert!(
            pause >= base / 2 && pause <= base * 3 / 2,
            "{attempt}: {pause:?}"
        );
    }
}
