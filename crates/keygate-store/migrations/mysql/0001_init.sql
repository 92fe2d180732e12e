-- keygate schema on MySQL/MariaDB: tenants -> apps -> keys, the change counter replicas poll,
-- and the admin audit trail. Secrets are stored only as envelope ciphertext (see crypto.rs).
-- utf8mb4_bin everywhere: full Unicode, and bytewise (case-sensitive) identifier comparison as
-- on SQLite and PostgreSQL. `keys` is a reserved word here, hence the backquotes.

CREATE TABLE tenants (
    id          VARCHAR(128) NOT NULL PRIMARY KEY,
    name        VARCHAR(255) NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE apps (
    id          VARCHAR(128) NOT NULL PRIMARY KEY,
    tenant_id   VARCHAR(128) NOT NULL,
    name        VARCHAR(255) NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    KEY apps_tenant_id (tenant_id),
    CONSTRAINT apps_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Lists (scopes, allowed_endpoints, allowed_cidrs) and scheme_settings are JSON text.
CREATE TABLE `keys` (
    access_key              VARCHAR(128) NOT NULL PRIMARY KEY,
    app_id                  VARCHAR(128) NOT NULL,
    scheme                  VARCHAR(64) NOT NULL,
    scheme_settings         MEDIUMTEXT NOT NULL,
    enabled                 BOOLEAN NOT NULL DEFAULT TRUE,
    valid_from              BIGINT NULL,
    valid_to                BIGINT NULL,
    timestamp_window_secs   BIGINT NOT NULL DEFAULT 300,
    description             VARCHAR(1024) NOT NULL DEFAULT '',
    scopes                  MEDIUMTEXT NOT NULL,
    allowed_endpoints       MEDIUMTEXT NOT NULL,
    allowed_cidrs           MEDIUMTEXT NOT NULL,
    rate_per_sec            DOUBLE NULL,
    rate_burst              BIGINT NULL,
    created_by              VARCHAR(256) NOT NULL DEFAULT '',
    last_used_at            BIGINT NULL,
    successor               VARCHAR(128) NULL,
    overlap_until           BIGINT NULL,
    secret_ciphertext       BLOB NOT NULL,
    master_key_version      BIGINT NOT NULL,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL,
    KEY keys_app_id (app_id),
    KEY keys_master_key_version (master_key_version, access_key),
    KEY keys_successor (successor),
    CONSTRAINT keys_app_fk FOREIGN KEY (app_id) REFERENCES apps(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row: bumped by every change, polled by replicas to know when to reload.
CREATE TABLE change_counter (
    id      INT NOT NULL PRIMARY KEY,
    value   BIGINT NOT NULL
) ENGINE=InnoDB;
INSERT INTO change_counter (id, value) VALUES (1, 0);

-- Who changed what. before/after are JSON without secrets.
CREATE TABLE admin_audit (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       VARCHAR(256) NOT NULL,
    action      VARCHAR(256) NOT NULL,
    target      VARCHAR(256) NOT NULL,
    before_json MEDIUMTEXT NULL,
    after_json  MEDIUMTEXT NULL,
    KEY admin_audit_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
