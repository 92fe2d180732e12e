-- Outbound providers (issue 6): the provider document (JSON, no secrets) and its named secrets,
-- each sealed like a key's secret (AAD binds the ciphertext to provider and name).
CREATE TABLE providers (
    id          VARCHAR(128) NOT NULL PRIMARY KEY,
    tenant_id   VARCHAR(128) NOT NULL,
    config      MEDIUMTEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  VARCHAR(256) NOT NULL,
    KEY providers_tenant (tenant_id),
    CONSTRAINT providers_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE provider_secrets (
    provider_id         VARCHAR(128) NOT NULL,
    name                VARCHAR(64) NOT NULL,
    master_key_version  BIGINT NOT NULL,
    ciphertext          BLOB NOT NULL,
    byte_len            BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    updated_by          VARCHAR(256) NOT NULL,
    PRIMARY KEY (provider_id, name),
    CONSTRAINT provider_secrets_fk FOREIGN KEY (provider_id) REFERENCES providers(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
