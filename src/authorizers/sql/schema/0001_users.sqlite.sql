-- ftpdlib user database, schema version 1 (SQLite).
CREATE TABLE ftpd_users (
    name             TEXT    NOT NULL PRIMARY KEY
                             CHECK (length(name) BETWEEN 1 AND 255),
    password         TEXT    NOT NULL DEFAULT '',
    home             TEXT    NOT NULL DEFAULT '.' CHECK (home <> ''),
    perm             TEXT    NOT NULL DEFAULT 'elr'
                             CHECK (perm NOT GLOB '*[^elradfmwMT]*'),
    msg_login        TEXT    NOT NULL DEFAULT 'Login successful.',
    msg_quit         TEXT    NOT NULL DEFAULT 'Goodbye.',
    read_limit       INTEGER CHECK (read_limit >= 0),
    write_limit      INTEGER CHECK (write_limit >= 0),
    user_read_limit  INTEGER CHECK (user_read_limit >= 0),
    user_write_limit INTEGER CHECK (user_write_limit >= 0),
    enabled          INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1))
);
CREATE TABLE ftpd_perm_overrides (
    name      TEXT    NOT NULL REFERENCES ftpd_users (name)
                      ON DELETE CASCADE ON UPDATE CASCADE,
    directory TEXT    NOT NULL CHECK (directory <> ''),
    perm      TEXT    NOT NULL CHECK (perm NOT GLOB '*[^elradfmwMT]*'),
    recursive INTEGER NOT NULL DEFAULT 0 CHECK (recursive IN (0, 1)),
    PRIMARY KEY (name, directory)
);
