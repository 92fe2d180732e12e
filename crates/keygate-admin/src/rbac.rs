// Who may do what. One pure function decides every call, so the role × endpoint × tenant matrix
// is readable in one place (and tested cell by cell in tests/rbac_matrix.rs).
//
// Visibility comes first: a principal that cannot see a tenant gets 404 for anything in it, so
// tokens of one tenant cannot even learn which ids exist in another. Within a visible tenant a
// role that lacks the permission gets 403.

use keygate_store::{AdminRole, AdminTokenRecord};

use crate::error::AdminError;

/// What a call does, and to what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Create, delete tenants; read the admin audit trail; anything gateway-wide.
    ManageGateway,
    /// Read a tenant, its apps and key metadata.
    Read { tenant: &'a str },
    /// Create/update/disable apps, update/rotate/revoke/delete keys of a tenant.
    ManageTenant { tenant: &'a str },
    /// Create a key for an app (developers: only granted apps).
    CreateKey { tenant: &'a str, app: &'a str },
    /// List, create, revoke admin tokens of a tenant.
    ManageMembers { tenant: &'a str },
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The target is in a tenant the principal cannot see: answer 404 as if it did not exist.
    Hidden,
    /// Visible, but the role lacks the permission: 403.
    Forbidden,
}

/// Allows the call or says why not; `what` names the requested resource for a 404.
pub fn check(
    p: &AdminTokenRecord,
    action: Action<'_>,
    what: impl FnOnce() -> String,
) -> Result<(), AdminError> {
    authorize(p, action).map_err(|d| match d {
        Denied::Hidden => AdminError::NotFound(what()),
        Denied::Forbidden => AdminError::Forbidden,
    })
}

/// The decision itself.
pub fn authorize(p: &AdminTokenRecord, action: Action<'_>) -> Result<(), Denied> {
    if p.role == AdminRole::GatewayAdmin {
        return Ok(());
    }
    let own = p.tenant_id.as_deref();
    let visible = |tenant: &str| own == Some(tenant);
    match action {
        Action::ManageGateway => Err(Denied::Forbidden),
        Action::Read { tenant } => visible(tenant).then_some(()).ok_or(Denied::Hidden),
        Action::ManageTenant { tenant } | Action::ManageMembers { tenant } => {
            if !visible(tenant) {
                return Err(Denied::Hidden);
            }
            if p.role == AdminRole::TenantAdmin {
                Ok(())
            } else {
                Err(Denied::Forbidden)
            }
        }
        Action::CreateKey { tenant, app } => {
            if !visible(tenant) {
                return Err(Denied::Hidden);
            }
            match p.role {
                AdminRole::TenantAdmin => Ok(()),
                _ if p.app_grants.iter().any(|a| a == app) => Ok(()),
                _ => Err(Denied::Forbidden),
            }
        }
    }
}

/// True if `p` may see tenant `tenant` at all.
pub fn sees(p: &AdminTokenRecord, tenant: &str) -> bool {
    p.role == AdminRole::GatewayAdmin || p.tenant_id.as_deref() == Some(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: AdminRole, tenant: Option<&str>, grants: &[&str]) -> AdminTokenRecord {
        let mut t = AdminTokenRecord::new("t", role, tenant);
        t.app_grants = grants.iter().map(|s| s.to_string()).collect();
        t
    }

    #[test]
    fn developers_create_keys_only_for_granted_apps_of_their_tenant() {
        let dev = token(AdminRole::TenantDeveloper, Some("t1"), &["a1"]);
        assert!(authorize(&dev, Action::CreateKey { tenant: "t1", app: "a1" }).is_ok());
        assert!(matches!(
            authorize(&dev, Action::CreateKey { tenant: "t1", app: "a2" }),
            Err(Denied::Forbidden)
        ));
        assert!(matches!(
            authorize(&dev, Action::CreateKey { tenant: "t2", app: "a1" }),
            Err(Denied::Hidden)
        ));
        assert!(authorize(&dev, Action::Read { tenant: "t1" }).is_ok());
        assert!(matches!(authorize(&dev, Action::ManageTenant { tenant: "t1" }), Err(Denied::Forbidden)));
        assert!(matches!(authorize(&dev, Action::ManageGateway), Err(Denied::Forbidden)));
    }

    #[test]
    fn tenant_admins_are_confined_to_their_tenant() {
        let adm = token(AdminRole::TenantAdmin, Some("t1"), &[]);
        assert!(authorize(&adm, Action::ManageTenant { tenant: "t1" }).is_ok());
        assert!(authorize(&adm, Action::ManageMembers { tenant: "t1" }).is_ok());
        assert!(authorize(&adm, Action::CreateKey { tenant: "t1", app: "any" }).is_ok());
        assert!(matches!(authorize(&adm, Action::Read { tenant: "t2" }), Err(Denied::Hidden)));
        assert!(matches!(authorize(&adm, Action::ManageGateway), Err(Denied::Forbidden)));
        let ga = token(AdminRole::GatewayAdmin, None, &[]);
        assert!(authorize(&ga, Action::ManageGateway).is_ok());
        assert!(sees(&ga, "anything") && sees(&adm, "t1") && !sees(&adm, "t2"));
    }
}
