// Repository flows shared by all backends: lock, check, write, bump the change counter and
// append the admin audit row, all in the caller's one transaction. No SQL lives here.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::admin_tokens::AdminTokenRecord;
use crate::objects::{ObjectKind, TenantObject, MAX_PER_TENANT};
use crate::providers::{LoadedProvider, ProviderRecord, ProviderSecretMeta, ScriptVersion, SealedSecret};
use crate::rows::{to_json, CiphertextRow, StoredKey};
use crate::validate::{invalid, limits};
use crate::versions::ConfigVersion;
use crate::{
    now_secs, AdminAuditEntry, AppRecord, KeyRecord, Keyring, Rotation, StoreError, TenantRecord, Upsert,
};

type R<T> = Result<T, StoreError>;

/// Rows re-wrapped per transaction by `rewrap_all`: small enough to keep each lock short.
pub(crate) const REWRAP_BATCH: i64 = 500;

/// Audit `before` lists at most this many access keys of a deleted app.
const AUDIT_KEY_LIST_MAX: usize = 1000;

/// The SQL primitives one backend provides on an open transaction. Dropping the value without
/// `commit` rolls everything back. `lock` asks for a row lock (`FOR UPDATE`) where the backend
/// has them; SQLite write transactions already hold the database's write lock. Flows lock rows
/// they are about to change, but only *read* when checking that a new id is free: a locking read
/// of a missing row takes an InnoDB gap lock, and two such creators deadlock. The INSERT's
/// unique violation (mapped to Conflict) settles those races instead.
pub(crate) trait Tx: Send + Sized {
    fn tenant_get(&mut self, id: &str, lock: bool) -> impl Future<Output = R<Option<TenantRecord>>> + Send;
    fn tenant_list(&mut self) -> impl Future<Output = R<Vec<TenantRecord>>> + Send;
    fn tenant_insert(&mut self, t: &TenantRecord, now: i64) -> impl Future<Output = R<()>> + Send;
    fn tenant_update(&mut self, t: &TenantRecord, now: i64) -> impl Future<Output = R<()>> + Send;
    fn tenant_delete(&mut self, id: &str) -> impl Future<Output = R<()>> + Send;
    fn tenant_app_count(&mut self, id: &str) -> impl Future<Output = R<i64>> + Send;

    fn app_get(&mut self, id: &str, lock: bool) -> impl Future<Output = R<Option<AppRecord>>> + Send;
    fn app_list(&mut self, tenant_id: Option<&str>) -> impl Future<Output = R<Vec<AppRecord>>> + Send;
    fn app_insert(&mut self, a: &AppRecord, now: i64) -> impl Future<Output = R<()>> + Send;
    fn app_update(&mut self, a: &AppRecord, now: i64) -> impl Future<Output = R<()>> + Send;
    fn app_delete(&mut self, id: &str) -> impl Future<Output = R<()>> + Send;
    /// Disables every enabled key of the app; returns how many changed.
    fn app_disable_keys(&mut self, app_id: &str, now: i64) -> impl Future<Output = R<u64>> + Send;

    fn key_get(&mut self, access_key: &str, lock: bool) -> impl Future<Output = R<Option<StoredKey>>> + Send;
    fn key_list(&mut self, app_id: Option<&str>) -> impl Future<Output = R<Vec<KeyRecord>>> + Send;
    fn key_insert(
        &mut self,
        k: &KeyRecord,
        version: u32,
        blob: &[u8],
        now: i64,
    ) -> impl Future<Output = R<()>> + Send;
    /// Writes every metadata column except `last_used_at` (owned by `touch`).
    fn key_update(&mut self, k: &KeyRecord, now: i64) -> impl Future<Output = R<()>> + Send;
    fn key_set_ciphertext(
        &mut self,
        access_key: &str,
        version: u32,
        blob: &[u8],
        now: i64,
    ) -> impl Future<Output = R<()>> + Send;
    fn key_delete(&mut self, access_key: &str) -> impl Future<Output = R<()>> + Send;
    /// Clears `successor` on keys that point at `access_key`; returns how many.
    fn key_clear_successor_refs(&mut self, access_key: &str, now: i64)
        -> impl Future<Output = R<u64>> + Send;

    /// Up to `limit` rows sealed under a master key older than `version`, with access key
    /// greater than `after`, in access-key order.
    fn keys_sealed_below(
        &mut self,
        version: u32,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = R<Vec<CiphertextRow>>> + Send;
    /// Replaces a row's ciphertext only if it still holds `old_blob` (a concurrent write wins).
    fn key_swap_ciphertext(
        &mut self,
        access_key: &str,
        old_version: u32,
        old_blob: &[u8],
        new_version: u32,
        new_blob: &[u8],
    ) -> impl Future<Output = R<bool>> + Send;
    /// `last_used_at = max(last_used_at, t)` for every `(access_key, t)`, distinct keys, sorted.
    fn touch(&mut self, batch: &[(String, i64)]) -> impl Future<Output = R<u64>> + Send;

    fn bump(&mut self) -> impl Future<Output = R<()>> + Send;
    fn counter(&mut self) -> impl Future<Output = R<i64>> + Send;
    fn version_insert(&mut self, v: &ConfigVersion) -> impl Future<Output = R<()>> + Send;
    fn version_list(&mut self, tenant_id: &str) -> impl Future<Output = R<Vec<ConfigVersion>>> + Send;
    /// Sets the publish fence until `until` unless another live one holds it.
    fn publish_begin(&mut self, until: i64, now: i64) -> impl Future<Output = R<bool>> + Send;
    /// Lifts the fence and bumps the change counter (replicas reload once, to the whole change).
    fn publish_end(&mut self) -> impl Future<Output = R<()>> + Send;
    /// The change counter and the fence's expiry, read together.
    fn change_state(&mut self) -> impl Future<Output = R<(i64, Option<i64>)>> + Send;
    fn audit_insert(&mut self, row: &AuditInsert<'_>) -> impl Future<Output = R<i64>> + Send;
    fn audit_list(&mut self, limit: i64, offset: i64)
        -> impl Future<Output = R<Vec<AdminAuditEntry>>> + Send;

    fn admin_token_insert(
        &mut self,
        rec: &AdminTokenRecord,
        hash: &str,
        grants_json: &str,
    ) -> impl Future<Output = R<()>> + Send;
    fn admin_token_get(&mut self, id: &str) -> impl Future<Output = R<Option<AdminTokenRecord>>> + Send;
    fn admin_token_by_hash(&mut self, hash: &str)
        -> impl Future<Output = R<Option<AdminTokenRecord>>> + Send;
    fn admin_token_list(
        &mut self,
        tenant_id: Option<&str>,
    ) -> impl Future<Output = R<Vec<AdminTokenRecord>>> + Send;
    fn admin_token_revoke(&mut self, id: &str, now: i64) -> impl Future<Output = R<()>> + Send;

    fn provider_get(&mut self, id: &str) -> impl Future<Output = R<Option<ProviderRecord>>> + Send;
    fn provider_list(
        &mut self,
        tenant_id: Option<&str>,
    ) -> impl Future<Output = R<Vec<ProviderRecord>>> + Send;
    fn provider_write(&mut self, p: &ProviderRecord, insert: bool) -> impl Future<Output = R<()>> + Send;
    fn provider_delete(&mut self, id: &str) -> impl Future<Output = R<()>> + Send;
    #[allow(clippy::too_many_arguments)]
    fn provider_secret_put(
        &mut self,
        provider_id: &str,
        name: &str,
        version: i64,
        ciphertext: &[u8],
        byte_len: i64,
        now: i64,
        actor: &str,
    ) -> impl Future<Output = R<()>> + Send;
    fn provider_secret_delete(
        &mut self,
        provider_id: &str,
        name: &str,
    ) -> impl Future<Output = R<u64>> + Send;
    fn provider_secrets(
        &mut self,
        provider_id: Option<&str>,
    ) -> impl Future<Output = R<Vec<SealedSecret>>> + Send;

    fn object_get(
        &mut self,
        tenant_id: &str,
        kind: ObjectKind,
        name: &str,
    ) -> impl Future<Output = R<Option<TenantObject>>> + Send;
    fn object_list(
        &mut self,
        tenant_id: Option<&str>,
        kind: Option<ObjectKind>,
    ) -> impl Future<Output = R<Vec<TenantObject>>> + Send;
    fn object_write(&mut self, o: &TenantObject, insert: bool) -> impl Future<Output = R<()>> + Send;
    fn object_delete(
        &mut self,
        tenant_id: &str,
        kind: ObjectKind,
        name: &str,
    ) -> impl Future<Output = R<u64>> + Send;

    fn script_insert(&mut self, v: &ScriptVersion) -> impl Future<Output = R<()>> + Send;
    fn script_list(&mut self, provider_id: &str) -> impl Future<Output = R<Vec<ScriptVersion>>> + Send;

    fn commit(self) -> impl Future<Output = R<()>> + Send;
}

/// An audit row ready to insert (JSON already scrubbed and serialized).
pub(crate) struct AuditInsert<'a> {
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<String>,
    pub after: Option<String>,
}

fn not_found(what: &str, id: &str) -> StoreError {
    StoreError::NotFound(format!("{what} {id}"))
}

fn value<T: serde::Serialize>(v: &T) -> R<Value> {
    serde_json::to_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Names whose values never enter the audit trail, whoever built the JSON.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "sk"
        || ["secret", "password", "passwd", "private_key", "privatekey", "token", "credential", "ciphertext"]
            .iter()
            .any(|p| n.contains(p))
}

/// Replaces values under secret-looking names; booleans and nulls (flags such as
/// `secret_replaced`) carry no secret and are kept.
pub(crate) fn scrub(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_name(k) && !(v.is_boolean() || v.is_null()) {
                    *v = Value::String("[redacted]".into());
                } else {
                    scrub(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

fn audit_json(field: &str, v: Option<&Value>) -> R<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    let mut v = v.clone();
    scrub(&mut v);
    let text = to_json(&v)?;
    if text.len() > limits::MAX_AUDIT_JSON_LEN {
        return Err(invalid(
            field,
            format!("must serialize to at most {} bytes", limits::MAX_AUDIT_JSON_LEN),
        ));
    }
    Ok(Some(text))
}

/// `with_actor` takes any string; the audit columns hold `MAX_AUDIT_FIELD_LEN` bytes.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(limits::MAX_AUDIT_FIELD_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

async fn audit<T: Tx>(
    tx: &mut T,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> R<i64> {
    let row = AuditInsert {
        at: now_secs(),
        actor: clip(actor),
        action: clip(action),
        target: clip(target),
        before: audit_json("audit.before", before)?,
        after: audit_json("audit.after", after)?,
    };
    tx.audit_insert(&row).await
}

/// A mutation's bookkeeping: the counter bump replicas poll, and the audit row.
async fn changed<T: Tx>(
    tx: &mut T,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> R<()> {
    tx.bump().await?;
    audit(tx, actor, action, target, before, after).await?;
    Ok(())
}

// ---- tenants ----

pub(crate) async fn create_tenant<T: Tx>(mut tx: T, actor: &str, t: &TenantRecord) -> R<TenantRecord> {
    if tx.tenant_get(&t.id, false).await?.is_some() {
        return Err(StoreError::Conflict(format!("tenant {} already exists", t.id)));
    }
    tx.tenant_insert(t, now_secs()).await?;
    changed(&mut tx, actor, "tenant.create", &t.id, None, Some(&value(t)?)).await?;
    tx.commit().await?;
    Ok(t.clone())
}

pub(crate) async fn get_tenant<T: Tx>(mut tx: T, id: &str) -> R<TenantRecord> {
    let t = tx.tenant_get(id, false).await?.ok_or_else(|| not_found("tenant", id))?;
    tx.commit().await?;
    Ok(t)
}

pub(crate) async fn list_tenants<T: Tx>(mut tx: T) -> R<Vec<TenantRecord>> {
    let all = tx.tenant_list().await?;
    tx.commit().await?;
    Ok(all)
}

pub(crate) async fn update_tenant<T: Tx>(mut tx: T, actor: &str, t: &TenantRecord) -> R<TenantRecord> {
    let before = tx.tenant_get(&t.id, true).await?.ok_or_else(|| not_found("tenant", &t.id))?;
    if before == *t {
        return Ok(before);
    }
    tx.tenant_update(t, now_secs()).await?;
    changed(&mut tx, actor, "tenant.update", &t.id, Some(&value(&before)?), Some(&value(t)?)).await?;
    tx.commit().await?;
    Ok(t.clone())
}

pub(crate) async fn delete_tenant<T: Tx>(mut tx: T, actor: &str, id: &str) -> R<()> {
    let before = tx.tenant_get(id, true).await?.ok_or_else(|| not_found("tenant", id))?;
    let apps = tx.tenant_app_count(id).await?;
    if apps > 0 {
        return Err(StoreError::Conflict(format!("tenant {id} still owns {apps} app(s)")));
    }
    tx.tenant_delete(id).await?;
    changed(&mut tx, actor, "tenant.delete", id, Some(&value(&before)?), None).await?;
    tx.commit().await
}

// ---- apps ----

pub(crate) async fn upsert_app<T: Tx>(mut tx: T, actor: &str, app: &AppRecord) -> R<Upsert> {
    let now = now_secs();
    let mut dirty = false;
    if tx.tenant_get(&app.tenant_id, false).await?.is_none() {
        // Config files name tenants without declaring them.
        let t = TenantRecord { id: app.tenant_id.clone(), name: app.tenant_id.clone() };
        tx.tenant_insert(&t, now).await?;
        audit(&mut tx, actor, "tenant.create", &t.id, None, Some(&value(&t)?)).await?;
        dirty = true;
    }
    let outcome = match tx.app_get(&app.id, true).await? {
        None => {
            tx.app_insert(app, now).await?;
            audit(&mut tx, actor, "app.create", &app.id, None, Some(&value(app)?)).await?;
            Upsert::Created
        }
        Some(before) if before == *app => Upsert::Unchanged,
        Some(before) => {
            tx.app_update(app, now).await?;
            audit(&mut tx, actor, "app.update", &app.id, Some(&value(&before)?), Some(&value(app)?)).await?;
            Upsert::Updated
        }
    };
    if dirty || outcome != Upsert::Unchanged {
        tx.bump().await?;
        tx.commit().await?;
    }
    Ok(outcome)
}

pub(crate) async fn create_app<T: Tx>(mut tx: T, actor: &str, app: &AppRecord) -> R<AppRecord> {
    if tx.tenant_get(&app.tenant_id, false).await?.is_none() {
        return Err(not_found("tenant", &app.tenant_id));
    }
    if tx.app_get(&app.id, false).await?.is_some() {
        return Err(StoreError::Conflict(format!("app {} already exists", app.id)));
    }
    tx.app_insert(app, now_secs()).await?;
    changed(&mut tx, actor, "app.create", &app.id, None, Some(&value(app)?)).await?;
    tx.commit().await?;
    Ok(app.clone())
}

pub(crate) async fn get_app<T: Tx>(mut tx: T, id: &str) -> R<AppRecord> {
    let a = tx.app_get(id, false).await?.ok_or_else(|| not_found("app", id))?;
    tx.commit().await?;
    Ok(a)
}

pub(crate) async fn list_apps<T: Tx>(mut tx: T, tenant_id: Option<&str>) -> R<Vec<AppRecord>> {
    let all = tx.app_list(tenant_id).await?;
    tx.commit().await?;
    Ok(all)
}

pub(crate) async fn update_app<T: Tx>(mut tx: T, actor: &str, app: &AppRecord) -> R<AppRecord> {
    let before = tx.app_get(&app.id, true).await?.ok_or_else(|| not_found("app", &app.id))?;
    if before == *app {
        return Ok(before);
    }
    if before.tenant_id != app.tenant_id && tx.tenant_get(&app.tenant_id, false).await?.is_none() {
        return Err(not_found("tenant", &app.tenant_id));
    }
    tx.app_update(app, now_secs()).await?;
    changed(&mut tx, actor, "app.update", &app.id, Some(&value(&before)?), Some(&value(app)?)).await?;
    tx.commit().await?;
    Ok(app.clone())
}

pub(crate) async fn delete_app<T: Tx>(mut tx: T, actor: &str, id: &str) -> R<()> {
    let before = tx.app_get(id, true).await?.ok_or_else(|| not_found("app", id))?;
    let keys = tx.key_list(Some(id)).await?;
    tx.app_delete(id).await?;
    let listed: Vec<&str> = keys.iter().take(AUDIT_KEY_LIST_MAX).map(|k| k.access_key.as_str()).collect();
    let before = serde_json::json!({
        "app": before,
        "key_count": keys.len(),
        "access_keys": listed,
    });
    changed(&mut tx, actor, "app.delete", id, Some(&before), None).await?;
    tx.commit().await
}

pub(crate) async fn disable_app<T: Tx>(mut tx: T, actor: &str, id: &str) -> R<u64> {
    let now = now_secs();
    let before = tx.app_get(id, true).await?.ok_or_else(|| not_found("app", id))?;
    let keys_disabled = tx.app_disable_keys(id, now).await?;
    if !before.enabled && keys_disabled == 0 {
        return Ok(0);
    }
    let after = AppRecord { enabled: false, ..before.clone() };
    if before.enabled {
        tx.app_update(&after, now).await?;
    }
    let after = serde_json::json!({ "app": after, "keys_disabled": keys_disabled });
    changed(&mut tx, actor, "app.disable", id, Some(&serde_json::json!({ "app": before })), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(keys_disabled)
}

// ---- keys ----

/// `k` with the fields only the store maintains taken from `stored` (or cleared for a new key).
fn with_managed_fields(k: &KeyRecord, stored: Option<&KeyRecord>) -> KeyRecord {
    let mut out = k.clone();
    match stored {
        Some(s) => {
            out.created_by.clone_from(&s.created_by);
            out.last_used_at = s.last_used_at;
            out.successor.clone_from(&s.successor);
            out.overlap_until = s.overlap_until;
        }
        None => {
            out.last_used_at = None;
            out.successor = None;
            out.overlap_until = None;
        }
    }
    out
}

async fn require_app<T: Tx>(tx: &mut T, app_id: &str) -> R<()> {
    match tx.app_get(app_id, false).await? {
        Some(_) => Ok(()),
        None => Err(not_found("app", app_id)),
    }
}

pub(crate) async fn upsert_key<T: Tx>(
    mut tx: T,
    actor: &str,
    keyring: &Keyring,
    key: &KeyRecord,
    secret: &[u8],
) -> R<Upsert> {
    let aad = key.access_key.as_bytes();
    let now = now_secs();
    let outcome = match tx.key_get(&key.access_key, true).await? {
        None => {
            require_app(&mut tx, &key.app_id).await?;
            let rec = with_managed_fields(key, None);
            let (version, blob) = keyring.seal(aad, secret)?;
            tx.key_insert(&rec, version, &blob, now).await?;
            changed(&mut tx, actor, "key.create", &rec.access_key, None, Some(&value(&rec)?)).await?;
            Upsert::Created
        }
        Some(stored) => {
            let merged = with_managed_fields(key, Some(&stored.record));
            let same_secret: bool = {
                let old = keyring.open(stored.version, aad, &stored.blob)?;
                old.as_slice().ct_eq(secret).into()
            };
            if merged == stored.record && same_secret {
                return Ok(Upsert::Unchanged);
            }
            if merged.app_id != stored.record.app_id {
                require_app(&mut tx, &merged.app_id).await?;
            }
            if merged != stored.record {
                tx.key_update(&merged, now).await?;
            }
            if !same_secret {
                let (version, blob) = keyring.seal(aad, secret)?;
                tx.key_set_ciphertext(&merged.access_key, version, &blob, now).await?;
            }
            let mut after = value(&merged)?;
            if let Value::Object(m) = &mut after {
                m.insert("secret_replaced".into(), Value::Bool(!same_secret));
            }
            let before = value(&stored.record)?;
            changed(&mut tx, actor, "key.update", &merged.access_key, Some(&before), Some(&after)).await?;
            Upsert::Updated
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

pub(crate) async fn create_key<T: Tx>(
    mut tx: T,
    actor: &str,
    keyring: &Keyring,
    key: &KeyRecord,
    secret: &[u8],
    action: &str,
) -> R<KeyRecord> {
    require_app(&mut tx, &key.app_id).await?;
    if tx.key_get(&key.access_key, false).await?.is_some() {
        return Err(StoreError::Conflict(format!("key {} already exists", key.access_key)));
    }
    let rec = with_managed_fields(key, None);
    let (version, blob) = keyring.seal(rec.access_key.as_bytes(), secret)?;
    tx.key_insert(&rec, version, &blob, now_secs()).await?;
    changed(&mut tx, actor, action, &rec.access_key, None, Some(&value(&rec)?)).await?;
    tx.commit().await?;
    Ok(rec)
}

pub(crate) async fn get_key<T: Tx>(mut tx: T, access_key: &str) -> R<KeyRecord> {
    let k = tx.key_get(access_key, false).await?.ok_or_else(|| not_found("key", access_key))?;
    tx.commit().await?;
    Ok(k.record)
}

pub(crate) async fn list_keys<T: Tx>(mut tx: T, app_id: Option<&str>) -> R<Vec<KeyRecord>> {
    let all = tx.key_list(app_id).await?;
    tx.commit().await?;
    Ok(all)
}

pub(crate) async fn update_key<T: Tx>(mut tx: T, actor: &str, key: &KeyRecord) -> R<KeyRecord> {
    let stored = tx.key_get(&key.access_key, true).await?.ok_or_else(|| not_found("key", &key.access_key))?;
    let merged = with_managed_fields(key, Some(&stored.record));
    if merged == stored.record {
        return Ok(merged);
    }
    if merged.app_id != stored.record.app_id {
        require_app(&mut tx, &merged.app_id).await?;
    }
    tx.key_update(&merged, now_secs()).await?;
    let (before, after) = (value(&stored.record)?, value(&merged)?);
    changed(&mut tx, actor, "key.update", &merged.access_key, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(merged)
}

pub(crate) async fn delete_key<T: Tx>(mut tx: T, actor: &str, access_key: &str) -> R<()> {
    let stored = tx.key_get(access_key, true).await?.ok_or_else(|| not_found("key", access_key))?;
    tx.key_delete(access_key).await?;
    tx.key_clear_successor_refs(access_key, now_secs()).await?;
    changed(&mut tx, actor, "key.delete", access_key, Some(&value(&stored.record)?), None).await?;
    tx.commit().await
}

pub(crate) async fn set_key_enabled<T: Tx>(
    mut tx: T,
    actor: &str,
    access_key: &str,
    enabled: bool,
) -> R<KeyRecord> {
    let stored = tx.key_get(access_key, true).await?.ok_or_else(|| not_found("key", access_key))?;
    if stored.record.enabled == enabled {
        return Ok(stored.record);
    }
    let after = KeyRecord { enabled, ..stored.record.clone() };
    tx.key_update(&after, now_secs()).await?;
    let action = if enabled { "key.enable" } else { "key.disable" };
    changed(&mut tx, actor, action, access_key, Some(&value(&stored.record)?), Some(&value(&after)?)).await?;
    tx.commit().await?;
    Ok(after)
}

pub(crate) async fn rotate_key<T: Tx>(
    mut tx: T,
    actor: &str,
    keyring: &Keyring,
    old_access_key: &str,
    new_key: &KeyRecord,
    new_secret: &[u8],
    overlap_secs: i64,
) -> R<Rotation> {
    let old = tx.key_get(old_access_key, true).await?.ok_or_else(|| not_found("key", old_access_key))?;
    if let Some(s) = &old.record.successor {
        return Err(StoreError::Conflict(format!("key {old_access_key} is already being rotated to {s}")));
    }
    if new_key.access_key == old_access_key {
        return Err(invalid("new_key.access_key", "must differ from the key being rotated"));
    }
    if new_key.app_id != old.record.app_id {
        return Err(invalid(
            "new_key.app_id",
            format!("must be the app of the key being rotated ({})", old.record.app_id),
        ));
    }
    if tx.key_get(&new_key.access_key, false).await?.is_some() {
        return Err(StoreError::Conflict(format!("key {} already exists", new_key.access_key)));
    }
    let now = now_secs();
    let new = with_managed_fields(new_key, None);
    let (version, blob) = keyring.seal(new.access_key.as_bytes(), new_secret)?;
    tx.key_insert(&new, version, &blob, now).await?;
    let old_after = KeyRecord {
        successor: Some(new.access_key.clone()),
        overlap_until: Some(now.saturating_add(overlap_secs)),
        ..old.record.clone()
    };
    tx.key_update(&old_after, now).await?;
    let after = serde_json::json!({ "old": old_after, "new": new });
    changed(&mut tx, actor, "key.rotate", old_access_key, Some(&value(&old.record)?), Some(&after)).await?;
    tx.commit().await?;
    Ok(Rotation { old: old_after, new })
}

/// Distinct access keys with their latest time, sorted so concurrent batches lock rows in the
/// same order (no deadlocks between replicas flushing at once).
pub(crate) fn dedupe_touches<S: AsRef<str>>(batch: &[(S, i64)]) -> Vec<(String, i64)> {
    let mut latest: HashMap<&str, i64> = HashMap::with_capacity(batch.len());
    for (ak, t) in batch {
        let ak = ak.as_ref();
        if ak.is_empty() || ak.len() > limits::MAX_ID_LEN || *t < 0 {
            continue;
        }
        let e = latest.entry(ak).or_insert(*t);
        *e = (*e).max(*t);
    }
    let mut out: Vec<(String, i64)> = latest.into_iter().map(|(k, t)| (k.to_owned(), t)).collect();
    out.sort_unstable();
    out
}

pub(crate) async fn touch_last_used<T: Tx>(mut tx: T, batch: &[(String, i64)]) -> R<u64> {
    let n = tx.touch(batch).await?;
    tx.commit().await?;
    Ok(n)
}

/// Saves `document` as the tenant's next version unless it equals the latest one (then `None`).
pub(crate) async fn add_version<T: Tx>(
    mut tx: T,
    actor: &str,
    tenant_id: &str,
    comment: &str,
    document: &str,
) -> R<Option<ConfigVersion>> {
    if tx.tenant_get(tenant_id, true).await?.is_none() {
        return Err(not_found("tenant", tenant_id));
    }
    let all = tx.version_list(tenant_id).await?;
    if all.last().is_some_and(|v| v.document == document) {
        tx.commit().await?;
        return Ok(None);
    }
    let v = ConfigVersion {
        tenant_id: tenant_id.to_string(),
        version: all.last().map_or(1, |v| v.version + 1),
        created_at: now_secs(),
        created_by: actor.to_string(),
        comment: comment.to_string(),
        document: document.to_string(),
    };
    tx.version_insert(&v).await?;
    tx.commit().await?;
    Ok(Some(v))
}

pub(crate) async fn list_versions<T: Tx>(mut tx: T, tenant_id: &str) -> R<Vec<ConfigVersion>> {
    let all = tx.version_list(tenant_id).await?;
    tx.commit().await?;
    Ok(all)
}

pub(crate) async fn publish_begin<T: Tx>(mut tx: T, until: i64) -> R<bool> {
    let ok = tx.publish_begin(until, now_secs()).await?;
    tx.commit().await?;
    Ok(ok)
}

pub(crate) async fn publish_end<T: Tx>(mut tx: T) -> R<()> {
    tx.publish_end().await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn change_state<T: Tx>(mut tx: T) -> R<(i64, Option<i64>)> {
    let v = tx.change_state().await?;
    tx.commit().await?;
    Ok(v)
}

pub(crate) async fn change_counter<T: Tx>(mut tx: T) -> R<i64> {
    let v = tx.counter().await?;
    tx.commit().await?;
    Ok(v)
}

/// Outcome of one `rewrap_batch` transaction.
pub(crate) struct RewrapStep {
    pub rewrapped: usize,
    pub from_versions: BTreeSet<u32>,
    /// Last access key scanned; `None` when nothing was left to scan.
    pub last: Option<String>,
}

pub(crate) async fn rewrap_batch<T: Tx>(
    mut tx: T,
    keyring: &Keyring,
    after: &str,
    limit: i64,
) -> R<RewrapStep> {
    let current = keyring.current_version();
    let rows = tx.keys_sealed_below(current, after, limit).await?;
    let mut step = RewrapStep { rewrapped: 0, from_versions: BTreeSet::new(), last: None };
    for row in &rows {
        let ak = row.access_key.0.as_str();
        let version = u32::try_from(row.master_key_version)
            .map_err(|_| StoreError::Corrupt(format!("master_key_version of key {ak}")))?;
        let (new_version, new_blob) =
            keyring.rewrap(version, ak.as_bytes(), &row.secret_ciphertext).map_err(|e| {
                tracing::error!(access_key = ak, version, error = %e, "cannot re-wrap key; rotation stopped");
                e
            })?;
        if tx.key_swap_ciphertext(ak, version, &row.secret_ciphertext, new_version, &new_blob).await? {
            step.rewrapped += 1;
            step.from_versions.insert(version);
        }
    }
    step.last = rows.last().map(|r| r.access_key.0.clone());
    tx.commit().await?;
    Ok(step)
}

pub(crate) async fn append_audit<T: Tx>(
    mut tx: T,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> R<i64> {
    let id = audit(&mut tx, actor, action, target, before, after).await?;
    tx.commit().await?;
    Ok(id)
}

pub(crate) async fn list_audit<T: Tx>(mut tx: T, limit: i64, offset: i64) -> R<Vec<AdminAuditEntry>> {
    let rows = tx.audit_list(limit, offset).await?;
    tx.commit().await?;
    Ok(rows)
}

// ---- admin tokens ----

pub(crate) async fn create_admin_token<T: Tx>(
    mut tx: T,
    actor: &str,
    rec: &AdminTokenRecord,
    hash: &str,
) -> R<AdminTokenRecord> {
    if let Some(tenant) = &rec.tenant_id {
        if tx.tenant_get(tenant, false).await?.is_none() {
            return Err(not_found("tenant", tenant));
        }
        for (i, app) in rec.app_grants.iter().enumerate() {
            match tx.app_get(app, false).await? {
                Some(a) if a.tenant_id == *tenant => {}
                _ => {
                    return Err(invalid(
                        format!("token.app_grants[{i}]"),
                        format!("app {app} does not exist in tenant {tenant}"),
                    ))
                }
            }
        }
    }
    let grants =
        serde_json::to_string(&rec.app_grants).map_err(|e| invalid("token.app_grants", e.to_string()))?;
    tx.admin_token_insert(rec, hash, &grants).await?;
    audit(&mut tx, actor, "admin_token.create", &rec.id, None, Some(&value(rec)?)).await?;
    tx.commit().await?;
    Ok(rec.clone())
}

pub(crate) async fn revoke_admin_token<T: Tx>(
    mut tx: T,
    actor: &str,
    id: &str,
    now: i64,
) -> R<AdminTokenRecord> {
    let before = tx.admin_token_get(id).await?.ok_or_else(|| not_found("admin token", id))?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    tx.admin_token_revoke(id, now).await?;
    let mut after = before.clone();
    after.revoked_at = Some(now);
    audit(&mut tx, actor, "admin_token.revoke", id, Some(&value(&before)?), Some(&value(&after)?)).await?;
    tx.commit().await?;
    Ok(after)
}

pub(crate) async fn get_admin_token<T: Tx>(mut tx: T, id: &str) -> R<AdminTokenRecord> {
    tx.admin_token_get(id).await?.ok_or_else(|| not_found("admin token", id))
}

pub(crate) async fn admin_token_by_hash<T: Tx>(mut tx: T, hash: &str) -> R<Option<AdminTokenRecord>> {
    tx.admin_token_by_hash(hash).await
}

pub(crate) async fn list_admin_tokens<T: Tx>(mut tx: T, tenant_id: Option<&str>) -> R<Vec<AdminTokenRecord>> {
    tx.admin_token_list(tenant_id).await
}

// ---- tenant objects (routes, alert rules) ----

pub(crate) async fn put_object<T: Tx>(
    mut tx: T,
    actor: &str,
    rec: &TenantObject,
) -> R<(TenantObject, Upsert)> {
    if tx.tenant_get(&rec.tenant_id, false).await?.is_none() {
        return Err(not_found("tenant", &rec.tenant_id));
    }
    let now = now_secs();
    let mut rec = rec.clone();
    rec.updated_at = now;
    rec.updated_by = actor.to_string();
    let action = |verb: &str| format!("{}.{verb}", rec.kind);
    let outcome = match tx.object_get(&rec.tenant_id, rec.kind, &rec.name).await? {
        Some(before) => {
            rec.created_at = before.created_at;
            if before.config == rec.config {
                tx.commit().await?;
                return Ok((before, Upsert::Unchanged));
            }
            tx.object_write(&rec, false).await?;
            changed(
                &mut tx,
                actor,
                &action("update"),
                &rec.target(),
                Some(&value(&before)?),
                Some(&value(&rec)?),
            )
            .await?;
            Upsert::Updated
        }
        None => {
            let owned = tx.object_list(Some(&rec.tenant_id), Some(rec.kind)).await?.len();
            if owned >= MAX_PER_TENANT {
                return Err(invalid(
                    "object",
                    format!(
                        "tenant {} already has {MAX_PER_TENANT} objects of kind {}",
                        rec.tenant_id, rec.kind
                    ),
                ));
            }
            rec.created_at = now;
            tx.object_write(&rec, true).await?;
            changed(&mut tx, actor, &action("create"), &rec.target(), None, Some(&value(&rec)?)).await?;
            Upsert::Created
        }
    };
    tx.commit().await?;
    Ok((rec, outcome))
}

pub(crate) async fn get_object<T: Tx>(
    mut tx: T,
    tenant_id: &str,
    kind: ObjectKind,
    name: &str,
) -> R<TenantObject> {
    let o = tx
        .object_get(tenant_id, kind, name)
        .await?
        .ok_or_else(|| not_found(kind.as_str(), &format!("{tenant_id}/{name}")))?;
    tx.commit().await?;
    Ok(o)
}

pub(crate) async fn list_objects<T: Tx>(
    mut tx: T,
    tenant_id: Option<&str>,
    kind: Option<ObjectKind>,
) -> R<Vec<TenantObject>> {
    let all = tx.object_list(tenant_id, kind).await?;
    tx.commit().await?;
    Ok(all)
}

pub(crate) async fn delete_object<T: Tx>(
    mut tx: T,
    actor: &str,
    tenant_id: &str,
    kind: ObjectKind,
    name: &str,
) -> R<()> {
    let before = tx
        .object_get(tenant_id, kind, name)
        .await?
        .ok_or_else(|| not_found(kind.as_str(), &format!("{tenant_id}/{name}")))?;
    tx.object_delete(tenant_id, kind, name).await?;
    changed(&mut tx, actor, &format!("{kind}.delete"), &before.target(), Some(&value(&before)?), None)
        .await?;
    tx.commit().await
}

// ---- outbound providers ----

pub(crate) async fn put_provider<T: Tx>(
    mut tx: T,
    actor: &str,
    rec: &ProviderRecord,
) -> R<(ProviderRecord, Upsert)> {
    if tx.tenant_get(&rec.tenant_id, false).await?.is_none() {
        return Err(not_found("tenant", &rec.tenant_id));
    }
    let now = now_secs();
    let mut rec = rec.clone();
    rec.updated_at = now;
    rec.updated_by = actor.to_string();
    let outcome = match tx.provider_get(&rec.id).await? {
        Some(before) => {
            if before.tenant_id != rec.tenant_id {
                return Err(StoreError::Conflict(format!("provider {} belongs to another tenant", rec.id)));
            }
            rec.created_at = before.created_at;
            tx.provider_write(&rec, false).await?;
            changed(&mut tx, actor, "provider.update", &rec.id, Some(&value(&before)?), Some(&value(&rec)?))
                .await?;
            Upsert::Updated
        }
        None => {
            rec.created_at = now;
            tx.provider_write(&rec, true).await?;
            changed(&mut tx, actor, "provider.create", &rec.id, None, Some(&value(&rec)?)).await?;
            Upsert::Created
        }
    };
    tx.commit().await?;
    Ok((rec, outcome))
}

pub(crate) async fn get_provider<T: Tx>(mut tx: T, id: &str) -> R<ProviderRecord> {
    let p = tx.provider_get(id).await?.ok_or_else(|| not_found("provider", id))?;
    tx.commit().await?;
    Ok(p)
}

pub(crate) async fn list_providers<T: Tx>(mut tx: T, tenant_id: Option<&str>) -> R<Vec<ProviderRecord>> {
    let all = tx.provider_list(tenant_id).await?;
    tx.commit().await?;
    Ok(all)
}

pub(crate) async fn delete_provider<T: Tx>(mut tx: T, actor: &str, id: &str) -> R<()> {
    let before = tx.provider_get(id).await?.ok_or_else(|| not_found("provider", id))?;
    tx.provider_delete(id).await?;
    changed(&mut tx, actor, "provider.delete", id, Some(&value(&before)?), None).await?;
    tx.commit().await
}

pub(crate) async fn put_provider_secret<T: Tx>(
    mut tx: T,
    actor: &str,
    keyring: &Keyring,
    provider_id: &str,
    name: &str,
    secret: &[u8],
) -> R<ProviderSecretMeta> {
    if tx.provider_get(provider_id).await?.is_none() {
        return Err(not_found("provider", provider_id));
    }
    let (version, blob) = keyring.seal(&crate::providers::aad(provider_id, name), secret)?;
    let now = now_secs();
    let len = i64::try_from(secret.len()).unwrap_or(i64::MAX);
    tx.provider_secret_put(provider_id, name, i64::from(version), &blob, len, now, actor).await?;
    let after = serde_json::json!({"provider": provider_id, "name": name, "byte_len": len});
    changed(&mut tx, actor, "provider.secret.put", &format!("{provider_id}/{name}"), None, Some(&after))
        .await?;
    tx.commit().await?;
    Ok(ProviderSecretMeta {
        name: name.to_string(),
        byte_len: len,
        updated_at: now,
        updated_by: actor.to_string(),
    })
}

pub(crate) async fn delete_provider_secret<T: Tx>(
    mut tx: T,
    actor: &str,
    provider_id: &str,
    name: &str,
) -> R<()> {
    if tx.provider_secret_delete(provider_id, name).await? == 0 {
        return Err(not_found("secret", &format!("{provider_id}/{name}")));
    }
    let before = serde_json::json!({"provider": provider_id, "name": name});
    changed(&mut tx, actor, "provider.secret.delete", &format!("{provider_id}/{name}"), Some(&before), None)
        .await?;
    tx.commit().await
}

pub(crate) async fn list_provider_secrets<T: Tx>(mut tx: T, provider_id: &str) -> R<Vec<ProviderSecretMeta>> {
    let metas = tx.provider_secrets(Some(provider_id)).await?.iter().map(SealedSecret::meta).collect();
    tx.commit().await?;
    Ok(metas)
}

/// Every provider with its decrypted secrets, for the outbound data plane.
pub(crate) async fn load_providers<T: Tx>(mut tx: T, keyring: &Keyring) -> R<Vec<LoadedProvider>> {
    let providers = tx.provider_list(None).await?;
    let secrets = tx.provider_secrets(None).await?;
    let mut out: Vec<LoadedProvider> =
        providers.into_iter().map(|record| LoadedProvider { record, secrets: Vec::new() }).collect();
    for s in secrets {
        let Some(p) = out.iter_mut().find(|p| p.record.id == s.provider_id.0) else { continue };
        let version = u32::try_from(s.master_key_version)
            .map_err(|_| StoreError::Corrupt(format!("secret {}/{}", s.provider_id.0, s.name.0)))?;
        let plain =
            keyring.open(version, &crate::providers::aad(&s.provider_id.0, &s.name.0), &s.ciphertext)?;
        p.secrets.push((s.name.0.clone(), plain));
    }
    tx.commit().await?;
    Ok(out)
}

/// Re-seals provider secrets below the keyring's current version. Returns how many.
pub(crate) async fn rewrap_provider_secrets<T: Tx>(mut tx: T, keyring: &Keyring) -> R<usize> {
    let current = i64::from(keyring.current_version());
    let mut n = 0;
    for s in tx.provider_secrets(None).await? {
        if s.master_key_version >= current {
            continue;
        }
        let aad = crate::providers::aad(&s.provider_id.0, &s.name.0);
        let version =
            u32::try_from(s.master_key_version).map_err(|_| StoreError::Corrupt("secret version".into()))?;
        let (v, blob) = keyring.rewrap(version, &aad, &s.ciphertext)?;
        tx.provider_secret_put(
            &s.provider_id.0,
            &s.name.0,
            i64::from(v),
            &blob,
            s.byte_len,
            s.updated_at,
            &s.updated_by.0,
        )
        .await?;
        n += 1;
    }
    tx.commit().await?;
    Ok(n)
}

/// Saves `source` as the provider's next script version (1, 2, …) and audits it.
pub(crate) async fn add_script<T: Tx>(
    mut tx: T,
    actor: &str,
    provider_id: &str,
    source: &str,
    comment: &str,
) -> R<ScriptVersion> {
    if tx.provider_get(provider_id).await?.is_none() {
        return Err(not_found("provider", provider_id));
    }
    let next = tx.script_list(provider_id).await?.last().map_or(1, |v| v.version + 1);
    let v = ScriptVersion {
        provider_id: provider_id.to_string(),
        version: next,
        source: source.to_string(),
        comment: comment.to_string(),
        created_at: now_secs(),
        created_by: actor.to_string(),
    };
    tx.script_insert(&v).await?;
    let after =
        serde_json::json!({"provider": provider_id, "version": next, "comment": comment, "source": source});
    audit(&mut tx, actor, "provider.script.save", &format!("{provider_id}/v{next}"), None, Some(&after))
        .await?;
    tx.commit().await?;
    Ok(v)
}

pub(crate) async fn list_scripts<T: Tx>(mut tx: T, provider_id: &str) -> R<Vec<ScriptVersion>> {
    let all = tx.script_list(provider_id).await?;
    tx.commit().await?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_redacts_secret_names_at_any_depth() {
        let mut v = serde_json::json!({
            "access_key": "AK1",
            "secret": "s3cr3t",
            "nested": [{"client_secret": "x", "Password": 5, "ok": "keep"}],
            "secret_replaced": true,
            "token": null,
        });
        scrub(&mut v);
        let text = v.to_string();
        assert!(!text.contains("s3cr3t") && !text.contains("\"x\"") && !text.contains(":5"));
        assert_eq!(v["access_key"], "AK1");
        assert_eq!(v["nested"][0]["ok"], "keep");
        assert_eq!(v["secret_replaced"], true);
    }

    #[test]
    fn touches_are_deduplicated_to_the_latest_and_sorted() {
        let out = dedupe_touches(&[("b", 5), ("a", 3), ("b", 9), ("b", 7), ("", 1), ("c", -1)]);
        assert_eq!(out, vec![("a".to_string(), 3), ("b".to_string(), 9)]);
    }
}
