// Short-lived API tokens: what a token grants, stored under the SHA-256 of the token (never the
// token itself), in memory (one replica) or Redis (every replica sees an issue or a revocation at once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

use crate::{RedisState, StateError, StateFuture};

/// What a token stands for. App tokens carry the access key that signed the exchange; user
/// tokens (issued through the admin API for a login service) carry a user id instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub app_id: String,
    /// The key whose signed exchange issued the token (app tokens).
    pub access_key: Option<String>,
    /// The end user the token is bound to (user tokens).
    pub user_id: Option<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

impl TokenGrant {
    /// Binary form: version, expiry, then three length-prefixed fields (app, key, user; a
    /// missing optional is length `u16::MAX`).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.app_id.len());
        out.push(1u8);
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        for f in [Some(self.app_id.as_str()), self.access_key.as_deref(), self.user_id.as_deref()] {
            match f {
                Some(s) => {
                    let len = u16::try_from(s.len()).unwrap_or(u16::MAX - 1).min(u16::MAX - 1);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
                }
                None => out.extend_from_slice(&u16::MAX.to_be_bytes()),
            }
        }
        out
    }

    fn decode(b: &[u8]) -> Result<Self, StateError> {
        let bad = || StateError::Corrupt("token record".into());
        let (&version, rest) = b.split_first().ok_or_else(bad)?;
        if version != 1 || rest.len() < 8 {
            return Err(bad());
        }
        let expires_at = i64::from_be_bytes(rest[..8].try_into().map_err(|_| bad())?);
        let mut rest = &rest[8..];
        let mut fields: [Option<String>; 3] = [None, None, None];
        for f in &mut fields {
            if rest.len() < 2 {
                return Err(bad());
            }
            let len = u16::from_be_bytes([rest[0], rest[1]]);
            rest = &rest[2..];
            if len != u16::MAX {
                let len = usize::from(len);
                if rest.len() < len {
                    return Err(bad());
                }
                *f = Some(String::from_utf8(rest[..len].to_vec()).map_err(|_| bad())?);
                rest = &rest[len..];
            }
        }
        let [app_id, access_key, user_id] = fields;
        if !rest.is_empty() {
            return Err(bad());
        }
        Ok(Self { app_id: app_id.ok_or_else(bad)?, access_key, user_id, expires_at })
    }

    fn matches(&self, app_id: &str, user_id: Option<&str>) -> bool {
        self.app_id == app_id && user_id.is_none_or(|u| self.user_id.as_deref() == Some(u))
    }
}

/// Where issued tokens live. `hash` is the SHA-256 of the token string: a leaked store or Redis
/// dump holds no usable token.
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Stores a grant for `ttl`.
    fn issue<'a>(&'a self, hash: &'a [u8; 32], grant: &'a TokenGrant, ttl: Duration) -> StateFuture<'a, ()>;
    /// The grant of a live token; `None` when unknown, expired or revoked.
    fn lookup<'a>(&'a self, hash: &'a [u8; 32]) -> StateFuture<'a, Option<TokenGrant>>;
    /// Revokes one token; `true` when it was live.
    fn revoke<'a>(&'a self, hash: &'a [u8; 32]) -> StateFuture<'a, bool>;
    /// Revokes every live token of `app_id` (only those bound to `user_id` when given) issued
    /// before the call; returns how many.
    fn revoke_app<'a>(&'a self, app_id: &'a str, user_id: Option<&'a str>) -> StateFuture<'a, u64>;
}

/// Prefix of every API token keygate issues (lets secret scanners and the gateway tell them apart).
pub const TOKEN_PREFIX: &str = "kgt_";

/// A fresh token (`kgt_` + 256 random bits, base64url) and the hash it is stored under.
pub fn new_token() -> Result<(String, [u8; 32]), StateError> {
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| StateError::Unavailable("system random source".into()))?;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 43);
    token.push_str(TOKEN_PREFIX);
    // base64url without padding, 6 bits at a time.
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in raw {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            token.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
    }
    if bits > 0 {
        token.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    raw.iter_mut().for_each(|b| *b = 0);
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// SHA-256 of a token string: the only form in which a token is stored or looked up.
pub fn token_hash(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// One replica's tokens. Bounded: at capacity, expired grants are dropped first; when every
/// grant is live the issue is refused ([`StateError::Full`]) rather than evicting a live token.
#[derive(Debug)]
pub struct MemoryTokenStore {
    capacity: usize,
    grants: Mutex<HashMap<[u8; 32], TokenGrant>>,
}

impl MemoryTokenStore {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), grants: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], TokenGrant>> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TokenStore for MemoryTokenStore {
    fn issue<'a>(&'a self, hash: &'a [u8; 32], grant: &'a TokenGrant, _ttl: Duration) -> StateFuture<'a, ()> {
        Box::pin(async move {
            let mut g = self.lock();
            if g.len() >= self.capacity {
                let now = unix_now();
                g.retain(|_, v| v.expires_at > now);
                if g.len() >= self.capacity {
                    return Err(StateError::Full { capacity: self.capacity });
                }
            }
            g.insert(*hash, grant.clone());
            Ok(())
        })
    }

    fn lookup<'a>(&'a self, hash: &'a [u8; 32]) -> StateFuture<'a, Option<TokenGrant>> {
        Box::pin(async move {
            let now = unix_now();
            Ok(self.lock().get(hash).filter(|g| g.expires_at > now).cloned())
        })
    }

    fn revoke<'a>(&'a self, hash: &'a [u8; 32]) -> StateFuture<'a, bool> {
        Box::pin(async move {
            let now = unix_now();
            Ok(self.lock().remove(hash).is_some_and(|g| g.expires_at > now))
        })
    }

    fn revoke_app<'a>(&'a self, app_id: &'a str, user_id: Option<&'a str>) -> StateFuture<'a, u64> {
        Box::pin(async move {
            let now = unix_now();
            let mut g = self.lock();
            let before = g.len();
            let mut live = 0u64;
            g.retain(|_, v| {
                let hit = v.matches(app_id, user_id);
                if hit && v.expires_at > now {
                    live += 1;
                }
                !hit
            });
            debug_assert!(g.len() <= before);
            Ok(live)
        })
    }
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedisState {
    /// `<prefix>tok:<hex sha-256>`: one key per token, expiring with it.
    pub fn token_key(&self, hash: &[u8; 32]) -> String {
        format!("{}tok:{}", self.prefix(), hex(hash))
    }

    /// `<prefix>tokapp:<app>`: the set of an app's token hashes, for revoking them all.
    fn token_index_key(&self, app_id: &str) -> String {
        // The app id is escaped like every other component (no separator or hash tag forgery).
        let mut k = format!("{}tokapp:", self.prefix());
        for b in app_id.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-') {
                k.push(char::from(b));
            } else {
                k.push_str(&format!("%{b:02X}"));
            }
        }
        k
    }
}

impl TokenStore for RedisState {
    fn issue<'a>(&'a self, hash: &'a [u8; 32], grant: &'a TokenGrant, ttl: Duration) -> StateFuture<'a, ()> {
        Box::pin(async move {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let key = self.token_key(hash);
            let index = self.token_index_key(&grant.app_id);
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("SET")
                .arg(&key)
                .arg(grant.encode())
                .arg("PX")
                .arg(ms)
                .ignore()
                .cmd("SADD")
                .arg(&index)
                .arg(hex(hash))
                .ignore()
                // The index lives as long as its longest-lived token (GT: never shortened).
                .cmd("PEXPIRE")
                .arg(&index)
                .arg(ms)
                .arg("GT")
                .ignore()
                .cmd("PEXPIRE")
                .arg(&index)
                .arg(ms)
                .arg("NX")
                .ignore();
            let mut conn = self.conn();
            self.deadline(async move { pipe.query_async::<Value>(&mut conn).await }).await?;
            Ok(())
        })
    }

    fn lookup<'a>(&'a self, hash: &'a [u8; 32]) -> StateFuture<'a, Option<TokenGrant>> {
        Box::pin(async move {
            let key = self.token_key(hash);
            let mut conn = self.conn();
            let v = self
                .deadline(async move {
                    redis::cmd("GET").arg(key).query_async::<Option<Vec<u8>>>(&mut conn).await
                })
                .await?;
            match v {
                None => Ok(None),
                Some(b) => {
                    let g = TokenGrant::decode(&b)?;
                    Ok((g.expires_at > unix_now()).then_some(g))
                }
            }
        })
    }

    fn revoke<'a>(&'a self, hash: &'a [u8; 32]) -> StateFuture<'a, bool> {
        Box::pin(async move {
            let key = self.token_key(hash);
            let mut conn = self.conn();
            let n = self
                .deadline(async move { redis::cmd("DEL").arg(key).query_async::<i64>(&mut conn).await })
                .await?;
            Ok(n > 0)
        })
    }

    fn revoke_app<'a>(&'a self, app_id: &'a str, user_id: Option<&'a str>) -> StateFuture<'a, u64> {
        Box::pin(async move {
            let index = self.token_index_key(app_id);
            let mut conn = self.conn();
            let idx = index.clone();
            let members = self
                .deadline(async move {
                    redis::cmd("SMEMBERS").arg(idx).query_async::<Vec<String>>(&mut conn).await
                })
                .await?;
            let mut revoked = 0u64;
            // Chunks keep each round trip well inside the per-call deadline.
            for chunk in members.chunks(200) {
                let keys: Vec<String> = chunk.iter().map(|h| format!("{}tok:{h}", self.prefix())).collect();
                let mut conn = self.conn();
                let ks = keys.clone();
                let values = self
                    .deadline(async move {
                        redis::cmd("MGET").arg(&ks).query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await
                    })
                    .await?;
                let mut del = Vec::new();
                let mut srem = Vec::new();
                for ((k, h), v) in keys.iter().zip(chunk).zip(values) {
                    match v.map(|b| TokenGrant::decode(&b)) {
                        // Gone already (expired): drop it from the index.
                        None => srem.push(h.clone()),
                        Some(Ok(g)) if g.matches(app_id, user_id) => {
                            del.push(k.clone());
                            srem.push(h.clone());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) => {
                            del.push(k.clone());
                            srem.push(h.clone());
                        }
                    }
                }
                if srem.is_empty() {
                    continue;
                }
                let mut pipe = redis::pipe();
                if !del.is_empty() {
                    pipe.cmd("DEL").arg(&del);
                } else {
                    pipe.cmd("ECHO").arg("0");
                }
                pipe.cmd("SREM").arg(&index).arg(&srem).ignore();
                let mut conn = self.conn();
                let (n,): (i64,) = self
                    .deadline(async move {
                        match pipe.query_async::<(Value,)>(&mut conn).await? {
                            (Value::Int(n),) => Ok((n,)),
                            _ => Ok((0,)),
                        }
                    })
                    .await?;
                revoked += u64::try_from(n).unwrap_or(0);
            }
            Ok(revoked)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn grant(app: &str, key: Option<&str>, user: Option<&str>, expires_at: i64) -> TokenGrant {
        TokenGrant {
            app_id: app.into(),
            access_key: key.map(Into::into),
            user_id: user.map(Into::into),
            expires_at,
        }
    }

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (t1, h1) = new_token().unwrap();
        let (t2, h2) = new_token().unwrap();
        assert_ne!(t1, t2);
        assert_ne!(h1, h2);
        assert!(t1.starts_with(TOKEN_PREFIX) && t1.len() == TOKEN_PREFIX.len() + 43, "{t1}");
        assert!(t1[4..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(token_hash(&t1), h1);
        // Known answer: SHA-256("kgt_x").
        assert_eq!(
            token_hash("kgt_x").iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "83fe245ae426225c60953cc977b6f8f00ce7d474c6cf7aef05620c9500a9de49"
        );
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        for g in [
            grant("app-1", Some("AK1"), None, 1_900_000_000),
            grant("a", None, Some("user ü 42"), -5),
            grant("", Some(""), Some(""), 0),
        ] {
            assert_eq!(TokenGrant::decode(&g.encode()).unwrap(), g);
        }
        let enc = grant("app", Some("k"), None, 7).encode();
        for cut in 0..enc.len() {
            assert!(TokenGrant::decode(&enc[..cut]).is_err(), "truncated at {cut}");
        }
        let mut extra = enc.clone();
        extra.push(0);
        assert!(TokenGrant::decode(&extra).is_err());
        let mut v2 = enc;
        v2[0] = 2;
        assert!(TokenGrant::decode(&v2).is_err());
    }

    #[tokio::test]
    async fn memory_store_expires_revokes_and_stays_bounded() {
        let s = MemoryTokenStore::new(3);
        let now = unix_now();
        let t = Duration::from_secs(60);
        s.issue(&[1; 32], &grant("a", Some("k1"), None, now + 60), t).await.unwrap();
        s.issue(&[2; 32], &grant("a", None, Some("u1"), now + 60), t).await.unwrap();
        s.issue(&[3; 32], &grant("b", Some("k2"), None, now - 1), t).await.unwrap();
        assert_eq!(s.lookup(&[1; 32]).await.unwrap().unwrap().access_key.as_deref(), Some("k1"));
        assert!(s.lookup(&[3; 32]).await.unwrap().is_none(), "expired");
        // Full: the expired grant makes room; a fourth live one is refused, not evicted.
        s.issue(&[4; 32], &grant("b", Some("k2"), None, now + 60), t).await.unwrap();
        assert!(matches!(
            s.issue(&[5; 32], &grant("b", None, None, now + 60), t).await,
            Err(StateError::Full { capacity: 3 })
        ));
        assert_eq!(s.revoke_app("a", Some("u1")).await.unwrap(), 1);
        assert!(s.lookup(&[2; 32]).await.unwrap().is_none());
        assert!(s.lookup(&[1; 32]).await.unwrap().is_some(), "other user untouched");
        assert!(s.revoke(&[1; 32]).await.unwrap());
        assert!(!s.revoke(&[1; 32]).await.unwrap());
        assert_eq!(s.revoke_app("b", None).await.unwrap(), 1);
        assert!(s.lookup(&[4; 32]).await.unwrap().is_none());
    }
}
