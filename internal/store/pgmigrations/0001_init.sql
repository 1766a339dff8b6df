-- Initial PostgreSQL schema: collectors, API keys, local apps, their inputs,
-- the media bytes of those inputs, and the audit log. Columns match the
-- SQLite schema, so both stores share their queries. Times are Unix
-- nanoseconds (BIGINT).

CREATE TABLE collectors (
    user_id                TEXT    NOT NULL,
    app_id                 TEXT    NOT NULL,
    id                     TEXT    NOT NULL,
    description            TEXT    NOT NULL DEFAULT '',
    created_at             BIGINT  NOT NULL,
    modified_at            BIGINT  NOT NULL,
    model_user_id          TEXT    NOT NULL,
    model_app_id           TEXT    NOT NULL,
    model_id               TEXT    NOT NULL,
    model_version_id       TEXT    NOT NULL DEFAULT '',
    caller_user_id         TEXT    NOT NULL DEFAULT '',
    -- post_inputs_key is stored as the store receives it. The node encrypts
    -- it before every write (internal/secret), so this column holds ciphertext.
    post_inputs_key        TEXT    NOT NULL DEFAULT '',
    pre_queue_workflow_id  TEXT    NOT NULL DEFAULT '',
    post_queue_workflow_id TEXT    NOT NULL DEFAULT '',
    random_sample          REAL    NOT NULL DEFAULT 0,
    collect_outputs        BOOLEAN NOT NULL DEFAULT FALSE,
    paused                 BOOLEAN NOT NULL DEFAULT FALSE,
    version                BIGINT  NOT NULL,
    PRIMARY KEY (user_id, app_id, id)
);

-- MatchCollectors looks up by source model and caller on every cache miss of
-- the request path, and by caller alone when the model is not known yet.
CREATE INDEX collectors_by_model
    ON collectors (model_user_id, model_app_id, model_id, caller_user_id);
CREATE INDEX collectors_by_caller
    ON collectors (caller_user_id);

CREATE TABLE api_keys (
    id         TEXT   NOT NULL PRIMARY KEY,
    -- hash is the hex SHA-256 of the secret. The secret itself is never stored.
    hash       TEXT   NOT NULL UNIQUE,
    user_id    TEXT   NOT NULL,
    app_id     TEXT   NOT NULL DEFAULT '',
    -- scopes is a JSON array of scope names.
    scopes     TEXT   NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL
);

CREATE INDEX api_keys_by_user ON api_keys (user_id, created_at);

CREATE TABLE apps (
    user_id     TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    name        TEXT   NOT NULL DEFAULT '',
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, id)
);

CREATE TABLE inputs (
    user_id      TEXT   NOT NULL,
    app_id       TEXT   NOT NULL,
    id           TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    -- message is the clarifai.api.Input in protobuf wire form, with the
    -- image, video and audio bytes moved out to the blobs table.
    message      BYTEA  NOT NULL,
    -- Hex SHA-256 keys into blobs, or '' when the input has none.
    image_sha256 TEXT   NOT NULL DEFAULT '',
    video_sha256 TEXT   NOT NULL DEFAULT '',
    audio_sha256 TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, app_id, id)
);

CREATE INDEX inputs_by_created ON inputs (user_id, app_id, created_at, id);

-- blobs stores media bytes once per distinct content, because every pod
-- shares this database and none can rely on local files. refs counts the
-- input columns that name the row, and the row is deleted when it drops to
-- zero.
CREATE TABLE blobs (
    sha256 TEXT   NOT NULL PRIMARY KEY,
    data   BYTEA  NOT NULL,
    refs   BIGINT NOT NULL CHECK (refs >= 0)
);

CREATE TABLE audit_log (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time          BIGINT NOT NULL,
    actor_user_id TEXT   NOT NULL DEFAULT '',
    actor_key_id  TEXT   NOT NULL DEFAULT '',
    action        TEXT   NOT NULL,
    resource      TEXT   NOT NULL,
    user_id       TEXT   NOT NULL DEFAULT '',
    app_id        TEXT   NOT NULL DEFAULT '',
    resource_id   TEXT   NOT NULL DEFAULT '',
    -- details is a JSON object with every secret masked, kept as text so it
    -- reads back byte for byte.
    details       TEXT   NOT NULL DEFAULT '{}'
);

-- ListAudit reads one app's entries, newest first.
CREATE INDEX audit_log_by_app ON audit_log (user_id, app_id, id);
