-- Admin API principals (issue 4). The token itself is never stored: only its SHA-256, which is
-- enough because tokens are 256-bit random values (no dictionary to attack).
CREATE TABLE admin_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    tenant_id   TEXT,
    app_grants  TEXT NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX admin_tokens_tenant ON admin_tokens(tenant_id);
