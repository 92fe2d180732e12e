// Owns provider access tokens: per provider+binding cache, single flight (many requests finding
// the token missing cause one fetch per replica, and with a shared store one per cluster),
// refresh ahead of expiry, and invalidation on 401 that never discards a newer token.
// Tokens leave this module only inside `SecretString`; in the shared store they are sealed.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::OutboundError;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store shared by replicas (Redis) holding sealed token blobs.
pub trait SharedTokens: Send + Sync + fmt::Debug {
    fn get<'a>(&'a self, key: &'a str) -> BoxFut<'a, Result<Option<Vec<u8>>, String>>;
    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> BoxFut<'a, Result<(), String>>;
    fn delete<'a>(&'a self, key: &'a str) -> BoxFut<'a, Result<(), String>>;
    /// Set-if-absent with a TTL: true when this caller now holds the lock.
    fn lock<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFut<'a, Result<bool, String>>;
    fn unlock<'a>(&'a self, key: &'a str) -> BoxFut<'a, Result<(), String>>;
}

/// Seals token blobs before they leave the process (the binary uses the master keyring).
pub trait Sealer: Send + Sync + fmt::Debug {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Option<Vec<u8>>;
    fn open(&self, aad: &[u8], blob: &[u8]) -> Option<Zeroizing<Vec<u8>>>;
}

/// A cached token.
pub struct Token {
    pub value: SecretString,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("expires_at_ms", &self.expires_at_ms).finish_non_exhaustive()
    }
}

/// What a recipe's fetch returns.
pub struct Fetched {
    pub value: Zeroizing<String>,
    pub ttl: Duration,
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Token>>>,
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// The fetch lock held on behalf of a script between `token_load` and `token_save`.
    held: Mutex<Option<tokio::sync::OwnedMutexGuard<()>>>,
}

impl Slot {
    fn current(&self) -> Option<Arc<Token>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set(&self, t: Option<Arc<Token>>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }
}

/// How long a replica waits for another replica's fetch before fetching itself.
const PEER_WAIT: Duration = Duration::from_secs(5);
const PEER_POLL: Duration = Duration::from_millis(25);

/// The token cache of one process.
pub struct TokenManager {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    shared: Option<(Arc<dyn SharedTokens>, Arc<dyn Sealer>)>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager").field("shared", &self.shared.is_some()).finish_non_exhaustive()
    }
}

impl Default for TokenManager {
    fn default() -> Self {
        Self::new(None)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl TokenManager {
    pub fn new(shared: Option<(Arc<dyn SharedTokens>, Arc<dyn Sealer>)>) -> Self {
        Self { slots: Mutex::new(HashMap::new()), shared }
    }

    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key.to_string()).or_default().clone()
    }

    /// Drops every cached token of keys starting with `prefix` (a provider's bindings changed).
    pub fn forget_prefix(&self, prefix: &str) {
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|k, _| !k.starts_with(prefix));
    }

    /// The token for `key`: cached, or fetched once however many callers ask at the same time.
    /// Within `refresh_before` of expiry one caller refreshes while the others keep using the
    /// still-valid token.
    pub async fn get<F, Fut>(
        &self,
        key: &str,
        refresh_before: Duration,
        fetch: F,
    ) -> Result<Arc<Token>, OutboundError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, OutboundError>>,
    {
        let slot = self.slot(key);
        let early = i64::try_from(refresh_before.as_millis()).unwrap_or(i64::MAX);
        if let Some(t) = slot.current() {
            let now = now_ms();
            if t.expires_at_ms.saturating_sub(early) > now {
                return Ok(t);
            }
            if t.expires_at_ms > now {
                // Due for refresh but still valid: only the caller that wins the lock refreshes.
                let Ok(_guard) = slot.fetching.try_lock() else { return Ok(t) };
                return match self.fetch_and_store(&slot, key, early, fetch).await {
                    Ok(fresh) => Ok(fresh),
                    Err(e) => {
                        tracing::warn!(token = key, error = %e, "token refresh failed; using the current token");
                        Ok(t)
                    }
                };
            }
        }
        let _guard = slot.fetching.lock().await;
        if let Some(t) = slot.current() {
            if t.expires_at_ms > now_ms() {
                return Ok(t); // fetched by the caller we waited for
            }
        }
        self.fetch_and_store(&slot, key, early, fetch).await
    }

    async fn fetch_and_store<F, Fut>(
        &self,
        slot: &Slot,
        key: &str,
        early: i64,
        fetch: F,
    ) -> Result<Arc<Token>, OutboundError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, OutboundError>>,
    {
        let mut locked = false;
        if let Some((shared, sealer)) = &self.shared {
            if let Some(t) = self.shared_token(shared.as_ref(), sealer.as_ref(), key).await {
                if t.expires_at_ms.saturating_sub(early) > now_ms() {
                    let t = Arc::new(t);
                    slot.set(Some(t.clone()));
                    return Ok(t);
                }
            }
            // Cluster-wide single flight: one replica fetches, the others wait for its result.
            let lock_key = format!("{key}:lock");
            match shared.lock(&lock_key, PEER_WAIT).await {
                Ok(true) => locked = true,
                Ok(false) => {
                    let deadline = tokio::time::Instant::now() + PEER_WAIT;
                    while tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(PEER_POLL).await;
                        if let Some(t) = self.shared_token(shared.as_ref(), sealer.as_ref(), key).await {
                            if t.expires_at_ms.saturating_sub(early) > now_ms() {
                                let t = Arc::new(t);
                                slot.set(Some(t.clone()));
                                return Ok(t);
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "shared token lock unavailable; fetching locally"),
            }
        }
        let result = fetch().await;
        let out = match result {
            Ok(f) => {
                let ttl_ms = i64::try_from(f.ttl.as_millis()).unwrap_or(i64::MAX);
                let token = Arc::new(Token {
                    value: SecretString::from(f.value.as_str().to_owned()),
                    expires_at_ms: now_ms().saturating_add(ttl_ms),
                });
                slot.set(Some(token.clone()));
                if let Some((shared, sealer)) = &self.shared {
                    self.shared_put(shared.as_ref(), sealer.as_ref(), key, &token, f.ttl).await;
                }
                Ok(token)
            }
            Err(e) => Err(e),
        };
        if locked {
            if let Some((shared, _)) = &self.shared {
                if let Err(e) = shared.unlock(&format!("{key}:lock")).await {
                    tracing::warn!(error = %e, "shared token unlock failed (the lock expires by itself)");
                }
            }
        }
        out
    }

    async fn shared_token(&self, shared: &dyn SharedTokens, sealer: &dyn Sealer, key: &str) -> Option<Token> {
        let blob = match shared.get(key).await {
            Ok(b) => b?,
            Err(e) => {
                tracing::warn!(error = %e, "shared token cache unavailable");
                return None;
            }
        };
        let plain = sealer.open(key.as_bytes(), &blob)?;
        if plain.len() < 8 {
            return None;
        }
        let (exp, value) = plain.split_at(8);
        let expires_at_ms = i64::from_be_bytes(exp.try_into().ok()?);
        let value = std::str::from_utf8(value).ok()?;
        Some(Token { value: SecretString::from(value.to_owned()), expires_at_ms })
    }

    async fn shared_put(
        &self,
        shared: &dyn SharedTokens,
        sealer: &dyn Sealer,
        key: &str,
        t: &Token,
        ttl: Duration,
    ) {
        let mut plain = Zeroizing::new(Vec::with_capacity(8 + t.value.expose_secret().len()));
        plain.extend_from_slice(&t.expires_at_ms.to_be_bytes());
        plain.extend_from_slice(t.value.expose_secret().as_bytes());
        let Some(blob) = sealer.seal(key.as_bytes(), &plain) else { return };
        if let Err(e) = shared.put(key, &blob, ttl).await {
            tracing::warn!(error = %e, "shared token cache write failed");
        }
    }

    /// For scripted recipes: the valid cached token, or `None` after taking this key's fetch lock
    /// (so concurrent scripts wait for this one's `token_save` instead of fetching too — the same
    /// single flight as built-in recipes). The lock is released by [`TokenManager::save`] or
    /// [`TokenManager::release`].
    pub async fn load_or_lock(&self, key: &str) -> Option<String> {
        let slot = self.slot(key);
        let valid = |slot: &Slot| {
            slot.current().filter(|t| t.expires_at_ms > now_ms()).map(|t| t.value.expose_secret().to_string())
        };
        if let Some(t) = valid(&slot) {
            return Some(t);
        }
        let guard = slot.fetching.clone().lock_owned().await;
        if let Some(t) = valid(&slot) {
            return Some(t); // fetched by the script we waited for
        }
        *slot.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
        None
    }

    /// The cached token of `key`, if any (valid or not).
    pub fn current(&self, key: &str) -> Option<Arc<Token>> {
        self.slot(key).current()
    }

    /// Stores a token a script fetched and releases the fetch lock.
    pub fn save(&self, key: &str, fetched: Fetched) {
        let slot = self.slot(key);
        let ttl_ms = i64::try_from(fetched.ttl.as_millis()).unwrap_or(i64::MAX);
        slot.set(Some(Arc::new(Token {
            value: SecretString::from(fetched.value.as_str().to_owned()),
            expires_at_ms: now_ms().saturating_add(ttl_ms),
        })));
        slot.held.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Releases a fetch lock a script took and did not save (it failed).
    pub fn release(&self, key: &str) {
        self.slot(key).held.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Forgets `stale` after the provider refused it. A newer token fetched meanwhile (by this
    /// or another replica) is kept, so a burst of 401s causes one refetch, not one per request.
    pub async fn invalidate(&self, key: &str, stale: &Arc<Token>) {
        let slot = self.slot(key);
        {
            let mut cur = slot.current.lock().unwrap_or_else(|p| p.into_inner());
            if cur.as_ref().is_some_and(|c| c.value.expose_secret() == stale.value.expose_secret()) {
                *cur = None;
            }
        }
        if let Some((shared, sealer)) = &self.shared {
            if let Some(t) = self.shared_token(shared.as_ref(), sealer.as_ref(), key).await {
                if t.value.expose_secret() == stale.value.expose_secret() {
                    if let Err(e) = shared.delete(key).await {
                        tracing::warn!(error = %e, "shared token delete failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fetched(v: &str, ttl: Duration) -> Result<Fetched, OutboundError> {
        Ok(Fetched { value: Zeroizing::new(v.to_string()), ttl })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_thousand_concurrent_misses_fetch_once() {
        let tm = Arc::new(TokenManager::default());
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (tm, calls) = (tm.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                let t = tm
                    .get("p:k", Duration::from_secs(1), || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        fetched("tok-1", Duration::from_secs(60))
                    })
                    .await
                    .unwrap();
                assert_eq!(t.value.expose_secret(), "tok-1");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_tokens_are_refetched_and_due_ones_refreshed_by_one_caller() {
        let tm = TokenManager::default();
        let t1 =
            tm.get("k", Duration::ZERO, || async { fetched("a", Duration::from_millis(30)) }).await.unwrap();
        assert_eq!(t1.value.expose_secret(), "a");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let t2 =
            tm.get("k", Duration::ZERO, || async { fetched("b", Duration::from_secs(60)) }).await.unwrap();
        assert_eq!(t2.value.expose_secret(), "b");
        // Within the refresh window: the caller refreshes; a failing refresh keeps the old token.
        let t3 = tm
            .get("k", Duration::from_secs(120), || async { Err(OutboundError::Unavailable("down".into())) })
            .await
            .unwrap();
        assert_eq!(t3.value.expose_secret(), "b");
        let t4 = tm
            .get("k", Duration::from_secs(120), || async { fetched("c", Duration::from_secs(600)) })
            .await
            .unwrap();
        assert_eq!(t4.value.expose_secret(), "c");
    }

    #[tokio::test]
    async fn invalidation_keeps_a_newer_token() {
        let tm = TokenManager::default();
        let old =
            tm.get("k", Duration::ZERO, || async { fetched("old", Duration::from_secs(60)) }).await.unwrap();
        tm.invalidate("k", &old).await;
        let new =
            tm.get("k", Duration::ZERO, || async { fetched("new", Duration::from_secs(60)) }).await.unwrap();
        assert_eq!(new.value.expose_secret(), "new");
        tm.invalidate("k", &old).await; // a late 401 for the old token
        let same = tm
            .get("k", Duration::ZERO, || async { fetched("newer", Duration::from_secs(60)) })
            .await
            .unwrap();
        assert_eq!(same.value.expose_secret(), "new");
        assert!(!format!("{same:?}").contains("new\""));
    }

    #[tokio::test]
    async fn a_failed_fetch_is_an_error_and_not_cached() {
        let tm = TokenManager::default();
        let e = tm.get("k", Duration::ZERO, || async { Err(OutboundError::AuthFailed) }).await.unwrap_err();
        assert_eq!(e.code(), "provider_auth_failed");
        let t = tm.get("k", Duration::ZERO, || async { fetched("x", Duration::from_secs(5)) }).await.unwrap();
        assert_eq!(t.value.expose_secret(), "x");
    }
}
