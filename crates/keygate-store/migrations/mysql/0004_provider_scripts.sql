-- Scripted recipes (issue 7): every saved script is a numbered version; the provider document
-- holds the active one, so rollback is activating an earlier version.
CREATE TABLE provider_scripts (
    provider_id VARCHAR(128) NOT NULL,
    version     BIGINT NOT NULL,
    source      MEDIUMTEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  VARCHAR(256) NOT NULL,
    PRIMARY KEY (provider_id, version),
    CONSTRAINT provider_scripts_fk FOREIGN KEY (provider_id) REFERENCES providers(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
