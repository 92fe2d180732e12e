-- Tenant-owned configuration objects (issue 11): routes and alert rules a tenant edits through
-- the admin API, versioned with the rest of its configuration. The document is JSON validated by
-- the binary (route and alert-rule parsers); the store keeps it opaque.
CREATE TABLE tenant_objects (
    tenant_id   VARCHAR(128) NOT NULL,
    kind        VARCHAR(32) NOT NULL,
    name        VARCHAR(128) NOT NULL,
    config      LONGTEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, name),
    CONSTRAINT tenant_objects_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
