// Tenant-owned configuration objects (issue 11): the routes and alert rules a tenant edits through
// the admin API. The store keeps each as an opaque JSON document under (tenant, kind, name); the
// binary validates the document (route and alert-rule parsers) before it is written, and loads
// them into the data plane like providers. Writes bump the change counter and are audited.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::validate::{identifier, invalid};
use crate::StoreError;

/// What a tenant object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// An inbound route (path prefix → upstream) that only the tenant's apps may call.
    Route,
    /// An alert rule evaluated over the tenant's apps' traffic.
    AlertRule,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 2] = [ObjectKind::Route, ObjectKind::AlertRule];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::AlertRule => "alert_rule",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObjectKind {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "route" => Ok(Self::Route),
            "alert_rule" => Ok(Self::AlertRule),
            other => Err(invalid("object.kind", format!("unknown kind {other:?} (route, alert_rule)"))),
        }
    }
}

/// A tenant object and its document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantObject {
    pub tenant_id: String,
    pub kind: ObjectKind,
    /// Unique per tenant and kind: `[A-Za-z0-9_.-]`, 1 to 64 characters.
    pub name: String,
    /// The object's document (validated by the binary before it is stored).
    pub config: serde_json::Value,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
    #[serde(default)]
    pub updated_by: String,
}

impl TenantObject {
    /// `tenant/kind/name`, the audit target.
    pub fn target(&self) -> String {
        format!("{}/{}/{}", self.tenant_id, self.kind, self.name)
    }
}

/// Largest object document.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Objects of one kind a tenant may own.
pub const MAX_PER_TENANT: usize = 500;

pub(crate) fn validate_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid("object.name", "1 to 64 of [A-Za-z0-9_.-]"))
    }
}

pub(crate) fn validate(rec: &TenantObject) -> Result<(), StoreError> {
    identifier("object.tenant_id", &rec.tenant_id)?;
    validate_name(&rec.name)?;
    if !rec.config.is_object() {
        return Err(invalid("object.config", "must be a JSON object"));
    }
    if rec.config.to_string().len() > MAX_CONFIG_BYTES {
        return Err(invalid("object.config", format!("at most {MAX_CONFIG_BYTES} bytes")));
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
pub(crate) struct ObjectRow {
    tenant_id: crate::rows::Text,
    kind: crate::rows::Text,
    name: crate::rows::Text,
    config: crate::rows::Text,
    created_at: i64,
    updated_at: i64,
    updated_by: crate::rows::Text,
}

impl TryFrom<ObjectRow> for TenantObject {
    type Error = StoreError;

    fn try_from(r: ObjectRow) -> Result<Self, StoreError> {
        let corrupt =
            || StoreError::Corrupt(format!("tenant object {}/{}/{}", r.tenant_id.0, r.kind.0, r.name.0));
        Ok(Self {
            kind: r.kind.0.parse().map_err(|_| corrupt())?,
            config: serde_json::from_str(&r.config.0).map_err(|_| corrupt())?,
            tenant_id: r.tenant_id.0,
            name: r.name.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
            updated_by: r.updated_by.0,
        })
    }
}

pub(crate) const COLUMNS: &str = "tenant_id, kind, name, config, created_at, updated_at, updated_by";

/// The tenant-object queries of `repo::Tx`, once for every backend (placeholder closure
/// `usize -> String` as in `provider_methods!`).
macro_rules! object_methods {
    ($ph:expr) => {
        async fn object_get(
            &mut self,
            tenant_id: &str,
            kind: crate::objects::ObjectKind,
            name: &str,
        ) -> Result<Option<crate::objects::TenantObject>, crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "SELECT {} FROM tenant_objects WHERE tenant_id = {} AND kind = {} AND name = {}",
                crate::objects::COLUMNS,
                ph(1),
                ph(2),
                ph(3)
            );
            let row = sqlx::query_as::<_, crate::objects::ObjectRow>(&sql)
                .bind(tenant_id)
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(&mut *self.0)
                .await?;
            row.map(crate::objects::TenantObject::try_from).transpose()
        }

        async fn object_list(
            &mut self,
            tenant_id: Option<&str>,
            kind: Option<crate::objects::ObjectKind>,
        ) -> Result<Vec<crate::objects::TenantObject>, crate::StoreError> {
            let ph = $ph;
            let mut filters = Vec::new();
            if tenant_id.is_some() {
                filters.push(format!("tenant_id = {}", ph(filters.len() + 1)));
            }
            if kind.is_some() {
                filters.push(format!("kind = {}", ph(filters.len() + 1)));
            }
            let filter =
                if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) };
            let sql = format!(
                "SELECT {} FROM tenant_objects{filter} ORDER BY tenant_id, kind, name",
                crate::objects::COLUMNS
            );
            let mut q = sqlx::query_as::<_, crate::objects::ObjectRow>(&sql);
            if let Some(t) = tenant_id {
                q = q.bind(t);
            }
            if let Some(k) = kind {
                q = q.bind(k.as_str());
            }
            let rows = q.fetch_all(&mut *self.0).await?;
            rows.into_iter().map(crate::objects::TenantObject::try_from).collect()
        }

        async fn object_write(
            &mut self,
            o: &crate::objects::TenantObject,
            insert: bool,
        ) -> Result<(), crate::StoreError> {
            let ph = $ph;
            let config = o.config.to_string();
            if insert {
                let sql = format!(
                    "INSERT INTO tenant_objects ({}) VALUES ({})",
                    crate::objects::COLUMNS,
                    (1..=7).map(ph).collect::<Vec<_>>().join(", ")
                );
                sqlx::query(&sql)
                    .bind(&o.tenant_id)
                    .bind(o.kind.as_str())
                    .bind(&o.name)
                    .bind(&config)
                    .bind(o.created_at)
                    .bind(o.updated_at)
                    .bind(&o.updated_by)
                    .execute(&mut *self.0)
                    .await
                    .map_err(|e| {
                        crate::write_error(
                            e,
                            || format!("{} {} already exists", o.kind, o.name),
                            || format!("tenant {}", o.tenant_id),
                        )
                    })?;
            } else {
                let sql = format!(
                    "UPDATE tenant_objects SET config = {}, updated_at = {}, updated_by = {} WHERE tenant_id = {} AND kind = {} AND name = {}",
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4),
                    ph(5),
                    ph(6)
                );
                sqlx::query(&sql)
                    .bind(&config)
                    .bind(o.updated_at)
                    .bind(&o.updated_by)
                    .bind(&o.tenant_id)
                    .bind(o.kind.as_str())
                    .bind(&o.name)
                    .execute(&mut *self.0)
                    .await?;
            }
            Ok(())
        }

        async fn object_delete(
            &mut self,
            tenant_id: &str,
            kind: crate::objects::ObjectKind,
            name: &str,
        ) -> Result<u64, crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "DELETE FROM tenant_objects WHERE tenant_id = {} AND kind = {} AND name = {}",
                ph(1),
                ph(2),
                ph(3)
            );
            Ok(sqlx::query(&sql)
                .bind(tenant_id)
                .bind(kind.as_str())
                .bind(name)
                .execute(&mut *self.0)
                .await?
                .rows_affected())
        }
    };
}
pub(crate) use object_methods;
