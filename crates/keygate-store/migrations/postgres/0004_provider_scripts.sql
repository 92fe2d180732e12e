-- Scripted recipes (issue 7): every saved script is a numbered version; the provider document
-- holds the active one, so rollback is activating an earlier version.
CREATE TABLE provider_scripts (
    provider_id TEXT COLLATE "C" NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    source      TEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (provider_id, version)
);
