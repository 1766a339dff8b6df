-- The audit log of the management API: who changed what and when.
-- AUTOINCREMENT keeps IDs increasing even after the newest rows are deleted,
-- so an ID is never reused.

CREATE TABLE audit_log (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    time          BIGINT  NOT NULL,
    actor_user_id TEXT    NOT NULL DEFAULT '',
    actor_key_id  TEXT    NOT NULL DEFAULT '',
    action        TEXT    NOT NULL,
    resource      TEXT    NOT NULL,
    user_id       TEXT    NOT NULL DEFAULT '',
    app_id        TEXT    NOT NULL DEFAULT '',
    resource_id   TEXT    NOT NULL DEFAULT '',
    -- details is a JSON object with every secret masked.
    details       TEXT    NOT NULL DEFAULT '{}'
);

-- ListAudit reads one app's entries, newest first.
CREATE INDEX audit_log_by_app ON audit_log (user_id, app_id, id);
