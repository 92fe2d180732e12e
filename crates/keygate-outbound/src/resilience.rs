// Owns per-provider protection of the provider and of us: a circuit breaker (consecutive failures
// open it; one probe after the cool-down decides) and a retry budget (retries may add only a
// share of the request rate, so a struggling provider is not hit by a retry storm).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the breaker allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go.
    Go,
    /// Half open: this request is the one probe.
    Probe,
    /// Open: refuse, retry after this long.
    Refuse(Duration),
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Consecutive-failure circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl Breaker {
    /// `threshold` 0 disables the breaker.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self { threshold, open_for, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    pub fn admit(&self) -> Admit {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Admit {
        if self.threshold == 0 {
            return Admit::Go;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            State::Closed { .. } => Admit::Go,
            State::Open { until } if now < until => Admit::Refuse(until - now),
            State::Open { .. } => {
                *s = State::HalfOpen { probing: true };
                Admit::Probe
            }
            State::HalfOpen { probing: true } => Admit::Refuse(Duration::from_secs(1)),
            State::HalfOpen { probing: false } => {
                *s = State::HalfOpen { probing: true };
                Admit::Probe
            }
        }
    }

    /// Records the outcome of an admitted request.
    pub fn record(&self, ok: bool) {
        self.record_at(ok, Instant::now());
    }

    fn record_at(&self, ok: bool, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s = match (&*s, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => {
                State::Closed { failures: failures + 1 }
            }
            (State::Open { until }, false) => State::Open { until: *until },
            (_, false) => State::Open { until: now + self.open_for },
        };
    }

    /// True while requests are refused.
    pub fn is_open(&self) -> bool {
        matches!(*self.state.lock().unwrap_or_else(|p| p.into_inner()), State::Open { until } if Instant::now() < until)
    }
}

/// Retry budget: every request deposits `ratio` tokens, every retry withdraws one; the balance
/// is capped and refilled with a floor of `min_per_sec` so low-traffic providers can still retry.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    cap: f64,
    inner: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    pub fn new(ratio: f64) -> Self {
        let min_per_sec = 10.0;
        Self {
            ratio,
            min_per_sec,
            cap: min_per_sec.max(1000.0 * ratio),
            inner: Mutex::new((min_per_sec, Instant::now())),
        }
    }

    /// Called once per request.
    pub fn deposit(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut g);
        g.0 = (g.0 + self.ratio).min(self.cap);
    }

    /// Takes one retry from the budget; false when exhausted.
    pub fn try_withdraw(&self) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut g);
        if g.0 >= 1.0 {
            g.0 -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&self, g: &mut (f64, Instant)) {
        let now = Instant::now();
        let elapsed = now.duration_since(g.1).as_secs_f64();
        g.1 = now;
        // The floor refills only up to min_per_sec: it keeps retries possible, not plentiful.
        if g.0 < self.min_per_sec {
            g.0 = (g.0 + elapsed * self.min_per_sec).min(self.min_per_sec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_probes_once() {
        let b = Breaker::new(3, Duration::from_millis(100));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.admit_at(t0), Admit::Go);
            b.record_at(false, t0);
        }
        assert_eq!(b.admit_at(t0), Admit::Go);
        b.record_at(false, t0);
        assert!(matches!(b.admit_at(t0), Admit::Refuse(_)));
        let later = t0 + Duration::from_millis(150);
        assert_eq!(b.admit_at(later), Admit::Probe);
        assert!(matches!(b.admit_at(later), Admit::Refuse(_)), "only one probe at a time");
        b.record_at(false, later);
        assert!(matches!(b.admit_at(later), Admit::Refuse(_)), "failed probe re-opens");
        let again = later + Duration::from_millis(150);
        assert_eq!(b.admit_at(again), Admit::Probe);
        b.record_at(true, again);
        assert_eq!(b.admit_at(again), Admit::Go);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.record(false);
        b.record(true);
        b.record(false);
        assert_eq!(b.admit(), Admit::Go);
        b.record(false);
        assert!(b.is_open());
        assert_eq!(Breaker::new(0, Duration::ZERO).admit(), Admit::Go);
    }

    #[test]
    fn retry_budget_limits_retries_to_a_share_of_traffic() {
        let budget = RetryBudget::new(0.1);
        // The floor allows a handful at start...
        let mut granted = 0;
        for _ in 0..1000 {
            if budget.try_withdraw() {
                granted += 1;
            }
        }
        assert!(granted <= 11, "floor only: {granted}");
        // ...then 1000 requests earn ~100 retries, not more.
        for _ in 0..1000 {
            budget.deposit();
        }
        let mut more = 0;
        for _ in 0..1000 {
            if budget.try_withdraw() {
                more += 1;
            }
        }
        assert!((95..=112).contains(&more), "earned {more}");
    }
}
