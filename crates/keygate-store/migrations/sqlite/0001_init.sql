-- Apps and their keys. Secrets are stored only as envelope ciphertext (see crypto.rs).
CREATE TABLE apps (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL DEFAULT 'default',
    name        TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE keys (
    access_key              TEXT PRIMARY KEY NOT NULL,
    app_id                  TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    scheme                  TEXT NOT NULL,
    scheme_settings         TEXT NOT NULL DEFAULT '{}',
    enabled                 INTEGER NOT NULL DEFAULT 1,
    valid_from              INTEGER,
    valid_to                INTEGER,
    timestamp_window_secs   INTEGER NOT NULL DEFAULT 300,
    secret_ciphertext       BLOB NOT NULL,
    master_key_version      INTEGER NOT NULL,
    description             TEXT NOT NULL DEFAULT '',
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
);
CREATE INDEX keys_app_id ON keys(app_id);

-- One row: bumped by every change, polled by replicas to know when to reload.
CREATE TABLE change_counter (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    value   INTEGER NOT NULL
);
INSERT INTO change_counter (id, value) VALUES (1, 0);
