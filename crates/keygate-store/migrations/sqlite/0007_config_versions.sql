-- Config versions with rollback (issue 11): each change set of a tenant's configuration as a
-- numbered document (secrets are references, never values), and the publish fence that keeps
-- replicas on their snapshot while a multi-object change is being applied.
CREATE TABLE config_versions (
    tenant_id  TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    document   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
);
ALTER TABLE change_counter ADD COLUMN publishing_until BIGINT NULL;
