-- Admin API principals (issue 4). Only the token's SHA-256 is stored (tokens are 256-bit random).
CREATE TABLE admin_tokens (
    id          VARCHAR(64) NOT NULL PRIMARY KEY,
    name        VARCHAR(256) NOT NULL,
    token_hash  CHAR(64) NOT NULL,
    role        VARCHAR(32) NOT NULL,
    tenant_id   VARCHAR(128) NULL,
    app_grants  MEDIUMTEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  VARCHAR(256) NOT NULL,
    expires_at  BIGINT NULL,
    revoked_at  BIGINT NULL,
    UNIQUE KEY admin_tokens_hash (token_hash),
    KEY admin_tokens_tenant (tenant_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
