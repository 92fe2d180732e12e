-- Admin API principals (issue 4). Only the token's SHA-256 is stored (tokens are 256-bit random).
CREATE TABLE admin_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    tenant_id   TEXT,
    app_grants  TEXT NOT NULL DEFAULT '[]',
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX admin_tokens_tenant ON admin_tokens(tenant_id);
