-- The migrations applied to this database, one row each (ftpdlib's own bookkeeping).
CREATE TABLE IF NOT EXISTS ftpd_schema_version (
    version     INTEGER     NOT NULL PRIMARY KEY,
    description TEXT        NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
