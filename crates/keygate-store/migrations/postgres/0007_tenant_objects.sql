-- Tenant-owned configuration objects (issue 11): routes and alert rules a tenant edits through
-- the admin API, versioned with the rest of its configuration. The document is JSON validated by
-- the binary (route and alert-rule parsers); the store keeps it opaque.
CREATE TABLE tenant_objects (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    config      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, name),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
);
