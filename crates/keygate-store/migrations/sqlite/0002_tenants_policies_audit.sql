-- Tenants, per-key policy and rotation columns, and the admin audit trail (issue 4).

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
-- Apps written before tenants existed keep working: their tenants are created here.
INSERT INTO tenants (id, name, created_at, updated_at)
    SELECT DISTINCT tenant_id, tenant_id, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)
    FROM apps;
CREATE INDEX apps_tenant_id ON apps(tenant_id);

-- SQLite cannot add a foreign key to an existing table without rebuilding it (which would
-- cascade-delete keys), so apps -> tenants is enforced by triggers instead.
CREATE TRIGGER apps_tenant_insert BEFORE INSERT ON apps
    WHEN NOT EXISTS (SELECT 1 FROM tenants WHERE id = NEW.tenant_id)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: apps.tenant_id'); END;
CREATE TRIGGER apps_tenant_update BEFORE UPDATE OF tenant_id ON apps
    WHEN NOT EXISTS (SELECT 1 FROM tenants WHERE id = NEW.tenant_id)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: apps.tenant_id'); END;
CREATE TRIGGER tenants_delete BEFORE DELETE ON tenants
    WHEN EXISTS (SELECT 1 FROM apps WHERE tenant_id = OLD.id)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: apps.tenant_id'); END;

-- Lists are JSON arrays of strings.
ALTER TABLE keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN allowed_endpoints TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN rate_per_sec REAL;
ALTER TABLE keys ADD COLUMN rate_burst INTEGER;
ALTER TABLE keys ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE keys ADD COLUMN last_used_at INTEGER;
ALTER TABLE keys ADD COLUMN successor TEXT;
ALTER TABLE keys ADD COLUMN overlap_until INTEGER;
CREATE INDEX keys_master_key_version ON keys(master_key_version, access_key);
CREATE INDEX keys_successor ON keys(successor);

-- Who changed what. before/after are JSON without secrets.
CREATE TABLE admin_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT
);
