// API tokens on the shared Redis: what one replica issues another sees, a revocation through
// any handle is immediate for all, tokens expire with their TTL, and only the hash is stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keygate_state::{TokenGrant, TokenStore};

use crate::common::*;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

fn grant(app: &str, key: Option<&str>, user: Option<&str>) -> TokenGrant {
    TokenGrant {
        app_id: app.into(),
        access_key: key.map(Into::into),
        user_id: user.map(Into::into),
        expires_at: now() + 600,
    }
}

#[tokio::test]
async fn tokens_are_shared_revoked_everywhere_and_expire() {
    let prefix = unique_prefix("tokens");
    let cleanup = Cleanup::new(SHARED_URL, &prefix);
    // Two handles = two replicas.
    let a = shared(&prefix, Duration::from_secs(1)).await;
    let b = shared(&prefix, Duration::from_secs(1)).await;
    let ttl = Duration::from_secs(600);
    a.issue(&[1; 32], &grant("app/1", Some("AK1"), None), ttl).await.unwrap();
    a.issue(&[2; 32], &grant("app/1", None, Some("alice")), ttl).await.unwrap();
    a.issue(&[3; 32], &grant("app/1", None, Some("bob")), ttl).await.unwrap();
    a.issue(&[4; 32], &grant("app-2", Some("AK2"), None), ttl).await.unwrap();
    let seen = b.lookup(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(
        (seen.app_id.as_str(), seen.access_key.as_deref(), seen.user_id),
        ("app/1", Some("AK1"), None)
    );
    assert!(seen.expires_at > now());
    // Only hashes are stored: no key or value holds the token bytes' own text.
    let keys = cleanup.keys();
    assert!(keys.contains(&a.token_key(&[1; 32])), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(&prefix)));
    let pttl: i64 = redis::cmd("PTTL").arg(a.token_key(&[1; 32])).query(&mut sync_conn(SHARED_URL)).unwrap();
    assert!((590_000..=600_000).contains(&pttl), "PTTL {pttl}");

    // Revoking on B is immediate on A.
    assert!(b.revoke(&[1; 32]).await.unwrap());
    assert!(a.lookup(&[1; 32]).await.unwrap().is_none());
    assert!(!a.revoke(&[1; 32]).await.unwrap());
    // One user's tokens of an app, then the app's remaining tokens; other apps untouched.
    assert_eq!(b.revoke_app("app/1", Some("alice")).await.unwrap(), 1);
    assert!(a.lookup(&[2; 32]).await.unwrap().is_none());
    assert!(a.lookup(&[3; 32]).await.unwrap().is_some());
    assert_eq!(a.revoke_app("app/1", None).await.unwrap(), 1);
    assert!(b.lookup(&[3; 32]).await.unwrap().is_none());
    assert!(b.lookup(&[4; 32]).await.unwrap().is_some());

    // Expiry comes from Redis (PX), not from a replica's memory.
    a.issue(&[5; 32], &grant("app-3", Some("AK3"), None), Duration::from_millis(150)).await.unwrap();
    assert!(b.lookup(&[5; 32]).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(b.lookup(&[5; 32]).await.unwrap().is_none());
    // A grant whose own expiry has passed is refused even if Redis still holds it.
    let mut old = grant("app-3", Some("AK3"), None);
    old.expires_at = now() - 1;
    a.issue(&[6; 32], &old, Duration::from_secs(60)).await.unwrap();
    assert!(b.lookup(&[6; 32]).await.unwrap().is_none());
    // Foreign bytes under a token key are an error, never a grant.
    redis::cmd("SET").arg(a.token_key(&[7; 32])).arg("junk").query::<()>(&mut sync_conn(SHARED_URL)).unwrap();
    assert!(a.lookup(&[7; 32]).await.is_err());
}
