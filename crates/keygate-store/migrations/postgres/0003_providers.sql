-- Outbound providers (issue 6): the provider document (JSON, no secrets) and its named secrets,
-- each sealed like a key's secret (AAD binds the ciphertext to provider and name).
CREATE TABLE providers (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    config      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);
CREATE INDEX providers_tenant ON providers(tenant_id);
CREATE TABLE provider_secrets (
    provider_id         TEXT COLLATE "C" NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    name                TEXT COLLATE "C" NOT NULL,
    master_key_version  BIGINT NOT NULL,
    ciphertext          BYTEA NOT NULL,
    byte_len            BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    updated_by          TEXT NOT NULL,
    PRIMARY KEY (provider_id, name)
);
