-- Initial schema: collectors, API keys, local apps and their inputs.
-- Times are Unix nanoseconds (BIGINT) so that the same columns work on
-- SQLite and PostgreSQL.

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
    -- NOTE: post_inputs_key is stored as given; encryption at rest is not
    -- implemented yet.
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
    -- hash is the hex SHA-256 of the secret; the secret itself is never stored.
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
    -- image, video and audio bytes moved out to the blob files named below.
    message      BLOB   NOT NULL,
    -- Hex SHA-256 names of the blob files, or '' when the input has none.
    image_sha256 TEXT   NOT NULL DEFAULT '',
    video_sha256 TEXT   NOT NULL DEFAULT '',
    audio_sha256 TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, app_id, id)
);

CREATE INDEX inputs_by_created ON inputs (user_id, app_id, created_at, id);
