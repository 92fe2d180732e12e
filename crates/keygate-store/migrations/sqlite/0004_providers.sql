-- Outbound providers (issue 6): the provider document (JSON, no secrets) and its named secrets,
-- each sealed like a key's secret (AAD binds the ciphertext to provider and name).
CREATE TABLE providers (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    config      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
);
CREATE INDEX providers_tenant ON providers(tenant_id);
CREATE TABLE provider_secrets (
    provider_id         TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    master_key_version  INTEGER NOT NULL,
    ciphertext          BLOB NOT NULL,
    byte_len            INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    updated_by          TEXT NOT NULL,
    PRIMARY KEY (provider_id, name)
);
