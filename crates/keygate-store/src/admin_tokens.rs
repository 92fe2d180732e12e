// Admin API principals: bearer tokens with a role, scoped to a tenant (and, for developers, to
// granted apps). The token is shown once at creation; only its SHA-256 is stored, which is enough
// because a token is 256 random bits (nothing to brute-force from the hash).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::validate::{identifier, invalid, limits};
use crate::StoreError;

/// Prefix of every admin token, so secret scanners and humans recognise one.
pub const TOKEN_PREFIX: &str = "kgadm_";

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Everything, every tenant.
    GatewayAdmin,
    /// Own tenant: apps, keys, members.
    TenantAdmin,
    /// Own tenant: read apps and key metadata; create keys only for granted apps.
    TenantDeveloper,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GatewayAdmin => "gateway_admin",
            Self::TenantAdmin => "tenant_admin",
            Self::TenantDeveloper => "tenant_developer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gateway_admin" | "gateway-admin" => Some(Self::GatewayAdmin),
            "tenant_admin" | "tenant-admin" => Some(Self::TenantAdmin),
            "tenant_developer" | "tenant-developer" => Some(Self::TenantDeveloper),
            _ => None,
        }
    }
}

/// An admin token's metadata (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTokenRecord {
    /// Public id (`tok_` + 16 hex), used to list and revoke.
    pub id: String,
    pub name: String,
    pub role: AdminRole,
    /// Required for tenant roles, absent for gateway admins.
    pub tenant_id: Option<String>,
    /// Apps a tenant developer may create keys for.
    pub app_grants: Vec<String>,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl AdminTokenRecord {
    /// A new record for [`crate::Store::create_admin_token`]; id and times are filled in there.
    pub fn new(name: &str, role: AdminRole, tenant_id: Option<&str>) -> Self {
        Self {
            id: String::new(),
            name: name.to_string(),
            role,
            tenant_id: tenant_id.map(str::to_string),
            app_grants: Vec::new(),
            created_at: 0,
            created_by: String::new(),
            expires_at: None,
            revoked_at: None,
        }
    }

    /// Usable at `now`: not revoked, not expired.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A fresh token: prefix + 43 base64url characters (256 bits), wiped on drop.
pub(crate) fn generate() -> Result<Zeroizing<String>, StoreError> {
    let secret = crate::generate_secret()?;
    let body = std::str::from_utf8(&secret).map_err(|_| StoreError::Crypto)?;
    Ok(Zeroizing::new(format!("{TOKEN_PREFIX}{body}")))
}

/// A new public id.
pub(crate) fn new_id() -> Result<String, StoreError> {
    let mut raw = [0u8; 8];
    crate::crypto::random(&mut raw)?;
    Ok(format!("tok_{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// Lowercase hex SHA-256 of the token: the stored lookup value.
pub(crate) fn hash(token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Shape checks; tenant and app existence are checked in the transaction.
pub(crate) fn validate(rec: &AdminTokenRecord) -> Result<(), StoreError> {
    if rec.name.trim().is_empty() || rec.name.len() > limits::MAX_NAME_LEN {
        return Err(invalid("token.name", format!("must be 1 to {} bytes", limits::MAX_NAME_LEN)));
    }
    if rec.name.chars().any(char::is_control) {
        return Err(invalid("token.name", "must not contain control characters"));
    }
    match (rec.role, &rec.tenant_id) {
        (AdminRole::GatewayAdmin, Some(_)) => {
            return Err(invalid("token.tenant_id", "a gateway admin token belongs to no tenant"))
        }
        (AdminRole::TenantAdmin | AdminRole::TenantDeveloper, None) => {
            return Err(invalid("token.tenant_id", "required for tenant roles"))
        }
        (_, Some(t)) => identifier("token.tenant_id", t)?,
        _ => {}
    }
    if rec.role != AdminRole::TenantDeveloper && !rec.app_grants.is_empty() {
        return Err(invalid("token.app_grants", "only tenant developers have app grants"));
    }
    if rec.app_grants.len() > limits::MAX_LIST_ITEMS {
        return Err(invalid("token.app_grants", format!("at most {} apps", limits::MAX_LIST_ITEMS)));
    }
    for (i, a) in rec.app_grants.iter().enumerate() {
        identifier(&format!("token.app_grants[{i}]"), a)?;
    }
    if rec.expires_at.is_some_and(|e| e <= crate::now_secs()) {
        return Err(invalid("token.expires_at", "must be in the future"));
    }
    Ok(())
}

/// Row shape shared by the backends.
#[derive(sqlx::FromRow)]
pub(crate) struct AdminTokenRow {
    id: crate::rows::Text,
    name: crate::rows::Text,
    role: crate::rows::Text,
    tenant_id: Option<crate::rows::Text>,
    app_grants: crate::rows::Text,
    created_at: i64,
    created_by: crate::rows::Text,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<AdminTokenRow> for AdminTokenRecord {
    type Error = StoreError;

    fn try_from(r: AdminTokenRow) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("admin token {}", r.id.0));
        Ok(Self {
            role: AdminRole::parse(&r.role.0).ok_or_else(corrupt)?,
            app_grants: serde_json::from_str(&r.app_grants.0).map_err(|_| corrupt())?,
            id: r.id.0,
            name: r.name.0,
            tenant_id: r.tenant_id.map(|t| t.0),
            created_at: r.created_at,
            created_by: r.created_by.0,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
}

pub(crate) const COLUMNS: &str =
    "id, name, role, tenant_id, app_grants, created_at, created_by, expires_at, revoked_at";

/// The admin-token queries of `repo::Tx`, written once: the backends differ only in their
/// placeholder syntax (`$n` or `?`), given as a closure `usize -> String`.
macro_rules! admin_token_methods {
    ($ph:expr) => {
        async fn admin_token_insert(
            &mut self,
            rec: &crate::admin_tokens::AdminTokenRecord,
            hash: &str,
            grants_json: &str,
        ) -> Result<(), crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "INSERT INTO admin_tokens ({}, token_hash) VALUES ({})",
                crate::admin_tokens::COLUMNS,
                (1..=10).map(ph).collect::<Vec<_>>().join(", ")
            );
            sqlx::query(&sql)
                .bind(&rec.id)
                .bind(&rec.name)
                .bind(rec.role.as_str())
                .bind(&rec.tenant_id)
                .bind(grants_json)
                .bind(rec.created_at)
                .bind(&rec.created_by)
                .bind(rec.expires_at)
                .bind(rec.revoked_at)
                .bind(hash)
                .execute(&mut *self.0)
                .await
                .map_err(|e| {
                    crate::write_error(e, || format!("admin token {} already exists", rec.id), String::new)
                })?;
            Ok(())
        }

        async fn admin_token_get(
            &mut self,
            id: &str,
        ) -> Result<Option<crate::admin_tokens::AdminTokenRecord>, crate::StoreError> {
            let ph = $ph;
            let sql =
                format!("SELECT {} FROM admin_tokens WHERE id = {}", crate::admin_tokens::COLUMNS, ph(1));
            let row = sqlx::query_as::<_, crate::admin_tokens::AdminTokenRow>(&sql)
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await?;
            row.map(crate::admin_tokens::AdminTokenRecord::try_from).transpose()
        }

        async fn admin_token_by_hash(
            &mut self,
            hash: &str,
        ) -> Result<Option<crate::admin_tokens::AdminTokenRecord>, crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "SELECT {} FROM admin_tokens WHERE token_hash = {}",
                crate::admin_tokens::COLUMNS,
                ph(1)
            );
            let row = sqlx::query_as::<_, crate::admin_tokens::AdminTokenRow>(&sql)
                .bind(hash)
                .fetch_optional(&mut *self.0)
                .await?;
            row.map(crate::admin_tokens::AdminTokenRecord::try_from).transpose()
        }

        async fn admin_token_list(
            &mut self,
            tenant_id: Option<&str>,
        ) -> Result<Vec<crate::admin_tokens::AdminTokenRecord>, crate::StoreError> {
            let ph = $ph;
            let filter =
                if tenant_id.is_some() { format!(" WHERE tenant_id = {}", ph(1)) } else { String::new() };
            let sql = format!(
                "SELECT {} FROM admin_tokens{filter} ORDER BY created_at, id",
                crate::admin_tokens::COLUMNS
            );
            let mut q = sqlx::query_as::<_, crate::admin_tokens::AdminTokenRow>(&sql);
            if let Some(t) = tenant_id {
                q = q.bind(t);
            }
            let rows = q.fetch_all(&mut *self.0).await?;
            rows.into_iter().map(crate::admin_tokens::AdminTokenRecord::try_from).collect()
        }

        async fn admin_token_revoke(&mut self, id: &str, now: i64) -> Result<(), crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "UPDATE admin_tokens SET revoked_at = {} WHERE id = {} AND revoked_at IS NULL",
                ph(1),
                ph(2)
            );
            sqlx::query(&sql).bind(now).bind(id).execute(&mut *self.0).await?;
            Ok(())
        }
    };
}
pub(crate) use admin_token_methods;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_prefixed_and_hash_to_hex() {
        let t = generate().unwrap();
        assert!(t.starts_with(TOKEN_PREFIX));
        assert_eq!(t.len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(*t, *generate().unwrap());
        let h = hash(&t);
        assert_eq!(h.len(), 64);
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn role_and_tenant_must_agree() {
        let mut r = AdminTokenRecord::new("ops", AdminRole::GatewayAdmin, None);
        assert!(validate(&r).is_ok());
        r.tenant_id = Some("t1".into());
        assert!(validate(&r).is_err());
        let mut d = AdminTokenRecord::new("dev", AdminRole::TenantDeveloper, Some("t1"));
        d.app_grants = vec!["app-1".into()];
        assert!(validate(&d).is_ok());
        let mut a = AdminTokenRecord::new("adm", AdminRole::TenantAdmin, Some("t1"));
        a.app_grants = vec!["app-1".into()];
        assert!(validate(&a).is_err());
        assert!(validate(&AdminTokenRecord::new("x", AdminRole::TenantAdmin, None)).is_err());
        assert!(validate(&AdminTokenRecord::new("", AdminRole::GatewayAdmin, None)).is_err());
    }
}
