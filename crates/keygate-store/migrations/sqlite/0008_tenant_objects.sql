-- Tenant-owned configuration objects (issue 11): routes and alert rules a tenant edits through
-- the admin API, versioned with the rest of its configuration. The document is JSON validated by
-- the binary (route and alert-rule parsers); the store keeps it opaque.
CREATE TABLE tenant_objects (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    config      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, name)
);
