// Admission: a request's nonce claim and all its rate-limit buckets decided as one atomic step,
// one Redis round trip. It must not charge buckets for a replay, nor part of a denied request.

use std::time::{Duration, Instant};

use crate::rate::Gcra;
use crate::{
    BucketLimit, MemoryNonceStore, MemoryRateLimiter, NonceClaim, RateDecision, StateError, StateFuture,
};

/// The nonce part of an [`Admission`].
#[derive(Debug, Clone, PartialEq)]
pub struct NonceCheck {
    /// Usually the access key: nonces are unique per key.
    pub scope: String,
    pub nonce: String,
    /// Must cover the whole window in which the request's timestamp is acceptable.
    pub ttl: Duration,
}

/// One bucket of an [`Admission`].
#[derive(Debug, Clone, PartialEq)]
pub struct BucketCheck {
    pub name: String,
    pub limit: BucketLimit,
    pub cost: u32,
}

/// Everything stateful the gateway checks before forwarding a request, after the signature holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    pub nonce: Option<NonceCheck>,
    pub buckets: Vec<BucketCheck>,
}

/// The answer to an [`Admission`].
///
/// Order and atomicity (identical for every backend):
/// 1. The nonce is claimed first. On a replay nothing else happens: no bucket is charged (a
///    replay must not drain the legitimate owner's budget) and `rate` is empty.
/// 2. Every bucket is evaluated. Tokens are taken only if **all** allow; otherwise none is
///    taken, `denied_by` is the first denying index and `rate` holds every bucket's decision
///    (non-denying ones report `allowed: true` and the `remaining` they would have had after
///    the charge, which was not taken; headers should use [`AdmitOutcome::headline`]).
/// 3. A rate-limited request keeps its nonce claimed. A client retrying after `Retry-After`
///    must send a freshly signed request with a new nonce anyway (the old one is burnt the
///    moment it was seen on the wire), and releasing the nonce would open a window in which a
///    captured copy of the denied request could be replayed once the bucket refills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmitOutcome {
    /// `None` when the admission had no nonce.
    pub nonce: Option<NonceClaim>,
    /// One decision per bucket, in the admission's order; empty on a replay.
    pub rate: Vec<RateDecision>,
    /// Index of the first bucket that denied.
    pub denied_by: Option<usize>,
    /// The answer came from this replica's local state because the shared backend failed (see
    /// [`crate::ResilientGate`]); metrics may count it.
    pub local_fallback: bool,
}

impl AdmitOutcome {
    /// True when the request may proceed: not a replay and no bucket denied.
    pub fn admitted(&self) -> bool {
        self.nonce != Some(NonceClaim::Replayed) && self.denied_by.is_none()
    }

    /// The decision to report in `RateLimit-*` headers: the denying bucket, else the one with
    /// the fewest tokens left.
    pub fn headline(&self) -> Option<&RateDecision> {
        match self.denied_by {
            Some(i) => self.rate.get(i),
            None => self.rate.iter().min_by_key(|d| d.remaining),
        }
    }
}

/// Nonce + rate limits in one step (one Redis round trip).
pub trait RequestGate: Send + Sync + std::fmt::Debug {
    fn admit<'a>(&'a self, req: &'a Admission) -> StateFuture<'a, AdmitOutcome>;
}

/// The memory [`RequestGate`]: a [`MemoryNonceStore`] and a [`MemoryRateLimiter`] composed with
/// the same ordering rules as the Redis script.
#[derive(Debug)]
pub struct MemoryGate {
    nonces: MemoryNonceStore,
    rates: MemoryRateLimiter,
}

impl MemoryGate {
    pub fn new(nonces: MemoryNonceStore, rates: MemoryRateLimiter) -> Self {
        Self { nonces, rates }
    }

    /// A gate remembering at most `nonce_capacity` nonces and `bucket_capacity` buckets.
    pub fn with_capacity(nonce_capacity: usize, bucket_capacity: usize) -> Self {
        Self::new(MemoryNonceStore::new(nonce_capacity), MemoryRateLimiter::new(bucket_capacity))
    }

    pub fn nonces(&self) -> &MemoryNonceStore {
        &self.nonces
    }

    pub fn rates(&self) -> &MemoryRateLimiter {
        &self.rates
    }

    /// Drops expired nonces and full buckets; run it every second or so.
    pub fn sweep(&self) {
        self.nonces.sweep();
        self.rates.sweep();
    }

    /// Decides synchronously; the trait method wraps this.
    pub fn admit_now(&self, req: &Admission) -> Result<AdmitOutcome, StateError> {
        self.admit_scaled(req, 1)
    }

    /// Like [`MemoryGate::admit_now`] with every bucket's rate and burst divided by `replicas`.
    pub(crate) fn admit_scaled(&self, req: &Admission, replicas: u32) -> Result<AdmitOutcome, StateError> {
        let checks = req
            .buckets
            .iter()
            .map(|b| Ok((b.name.as_str(), Gcra::scaled(&b.limit, replicas)?, b.cost)))
            .collect::<Result<Vec<_>, StateError>>()?;
        let mut out = AdmitOutcome::default();
        if let Some(n) = &req.nonce {
            let claim = self.nonces.claim_now(&n.scope, &n.nonce, n.ttl)?;
            out.nonce = Some(claim);
            if claim == NonceClaim::Replayed {
                return Ok(out);
            }
        }
        if !checks.is_empty() {
            let (rate, denied_by) = self.rates.check_many_at(&checks, Instant::now())?;
            out.rate = rate;
            out.denied_by = denied_by;
        }
        Ok(out)
    }
}

impl RequestGate for MemoryGate {
    fn admit<'a>(&'a self, req: &'a Admission) -> StateFuture<'a, AdmitOutcome> {
        Box::pin(std::future::ready(self.admit_now(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(nonce: &str, buckets: &[(&str, u32)]) -> Admission {
        Admission {
            nonce: Some(NonceCheck { scope: "AK".into(), nonce: nonce.into(), ttl: Duration::from_secs(60) }),
            buckets: buckets
                .iter()
                .map(|(name, burst)| BucketCheck {
                    name: (*name).into(),
                    limit: BucketLimit { rate_per_sec: 0.001, burst: *burst },
                    cost: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn replay_charges_nothing_and_denial_keeps_the_nonce() {
        let g = MemoryGate::with_capacity(100, 100);
        let out = g.admit_now(&req("n1", &[("key", 2), ("ip", 1)])).unwrap();
        assert!(out.admitted());
        assert_eq!(out.nonce, Some(NonceClaim::Fresh));
        assert_eq!(out.rate.len(), 2);
        assert_eq!(out.headline().unwrap().remaining, 0);

        let out = g.admit_now(&req("n1", &[("key", 2), ("ip", 1)])).unwrap();
        assert_eq!(out.nonce, Some(NonceClaim::Replayed));
        assert!(out.rate.is_empty() && !out.admitted());

        // ip is empty: denied, key not charged, nonce n2 burnt.
        let out = g.admit_now(&req("n2", &[("key", 2), ("ip", 1)])).unwrap();
        assert_eq!(out.denied_by, Some(1));
        assert!(out.rate[0].allowed && !out.rate[1].allowed);
        assert_eq!(out.headline(), Some(&out.rate[1]));
        assert!(!out.admitted());
        assert_eq!(g.admit_now(&req("n2", &[])).unwrap().nonce, Some(NonceClaim::Replayed));
        // key still has its token.
        assert!(g.admit_now(&req("n3", &[("key", 2)])).unwrap().admitted());
    }

    #[test]
    fn no_nonce_no_buckets_is_admitted() {
        let g = MemoryGate::with_capacity(1, 1);
        let out = g.admit_now(&Admission::default()).unwrap();
        assert!(out.admitted());
        assert_eq!(out, AdmitOutcome::default());
    }
}
