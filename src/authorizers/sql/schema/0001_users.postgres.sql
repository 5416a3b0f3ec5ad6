-- ftpdlib user database, schema version 1 (PostgreSQL).
CREATE TABLE ftpd_users (
    name             TEXT    NOT NULL PRIMARY KEY
                             CHECK (length(name) BETWEEN 1 AND 255),
    password         TEXT    NOT NULL DEFAULT '',
    home             TEXT    NOT NULL DEFAULT '.' CHECK (home <> ''),
    perm             TEXT    NOT NULL DEFAULT 'elr'
                             CHECK (perm ~ '^[elradfmwMT]*$'),
    msg_login        TEXT    NOT NULL DEFAULT 'Login successful.',
    msg_quit         TEXT    NOT NULL DEFAULT 'Goodbye.',
    read_limit       BIGINT  CHECK (read_limit >= 0),
    write_limit      BIGINT  CHECK (write_limit >= 0),
    user_read_limit  BIGINT  CHECK (user_read_limit >= 0),
    user_write_limit BIGINT  CHECK (user_write_limit >= 0),
    enabled          BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE TABLE ftpd_perm_overrides (
    name      TEXT    NOT NULL REFERENCES ftpd_users (name)
                      ON DELETE CASCADE ON UPDATE CASCADE,
    directory TEXT    NOT NULL CHECK (directory <> ''),
    perm      TEXT    NOT NULL CHECK (perm ~ '^[elradfmwMT]*$'),
    recursive BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (name, directory)
);
