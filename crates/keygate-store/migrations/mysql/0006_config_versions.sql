-- Config versions with rollback (issue 11): each change set of a tenant's configuration as a
-- numbered document (secrets are references, never values), and the publish fence that keeps
-- replicas on their snapshot while a multi-object change is being applied.
CREATE TABLE config_versions (
    tenant_id  VARCHAR(128) NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    document   LONGTEXT NOT NULL,
    PRIMARY KEY (tenant_id, version),
    CONSTRAINT config_versions_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
ALTER TABLE change_counter ADD COLUMN publishing_until BIGINT NULL;
