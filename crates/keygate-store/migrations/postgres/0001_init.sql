-- keygate schema on PostgreSQL: tenants -> apps -> keys, the change counter replicas poll, and
-- the admin audit trail. Secrets are stored only as envelope ciphertext (see crypto.rs).
-- Identifiers use COLLATE "C": bytewise equality and ordering, the same as SQLite and MySQL's
-- utf8mb4_bin, whatever the database's default collation is.

CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE apps (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX apps_tenant_id ON apps(tenant_id);

-- Lists (scopes, allowed_endpoints, allowed_cidrs) and scheme_settings are JSON text.
CREATE TABLE keys (
    access_key              TEXT COLLATE "C" PRIMARY KEY,
    app_id                  TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    scheme                  TEXT NOT NULL,
    scheme_settings         TEXT NOT NULL DEFAULT '{}',
    enabled                 BOOLEAN NOT NULL DEFAULT TRUE,
    valid_from              BIGINT,
    valid_to                BIGINT,
    timestamp_window_secs   BIGINT NOT NULL DEFAULT 300,
    description             TEXT NOT NULL DEFAULT '',
    scopes                  TEXT NOT NULL DEFAULT '[]',
    allowed_endpoints       TEXT NOT NULL DEFAULT '[]',
    allowed_cidrs           TEXT NOT NULL DEFAULT '[]',
    rate_per_sec            DOUBLE PRECISION,
    rate_burst              BIGINT,
    created_by              TEXT NOT NULL DEFAULT '',
    last_used_at            BIGINT,
    successor               TEXT COLLATE "C",
    overlap_until           BIGINT,
    secret_ciphertext       BYTEA NOT NULL,
    master_key_version      BIGINT NOT NULL,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL,
    CHECK ((rate_per_sec IS NULL) = (rate_burst IS NULL))
);
CREATE INDEX keys_app_id ON keys(app_id);
CREATE INDEX keys_master_key_version ON keys(master_key_version, access_key);
CREATE INDEX keys_successor ON keys(successor);

-- One row: bumped by every change, polled by replicas to know when to reload.
CREATE TABLE change_counter (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    value   BIGINT NOT NULL
);
INSERT INTO change_counter (id, value) VALUES (1, 0);

-- Who changed what. before/after are JSON without secrets.
CREATE TABLE admin_audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT
);
CREATE INDEX admin_audit_at ON admin_audit(at);
