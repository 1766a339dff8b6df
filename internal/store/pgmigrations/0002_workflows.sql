-- Workflows, collector policies, the admission ledger and previews, with
-- the same columns as the SQLite schema (migration 0003).

-- nodes is a clarifai.api.Workflow in protobuf wire form that carries only
-- the nodes. metadata is a JSON object, or '' when the workflow has none.
CREATE TABLE workflows (
    user_id     TEXT   NOT NULL,
    app_id      TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    modified_at BIGINT NOT NULL,
    nodes       BYTEA  NOT NULL,
    metadata    TEXT   NOT NULL DEFAULT '',
    version     BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, id)
);

CREATE INDEX workflows_by_created ON workflows (user_id, app_id, created_at, id);

-- collector.Policy. Durations are whole milliseconds, and 0 is no limit.
ALTER TABLE collectors ADD COLUMN max_per_hour      BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE collectors ADD COLUMN max_per_day       BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE collectors ADD COLUMN dedup_window_ms   BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE collectors ADD COLUMN max_per_concept   BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE collectors ADD COLUMN balance_window_ms BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE collectors ADD COLUMN preview           BOOLEAN NOT NULL DEFAULT FALSE;

-- admissions are the records each collector admitted. Every window check of
-- the ledger is a range scan over admitted_at in one of the indexes below.
CREATE TABLE admissions (
    user_id        TEXT   NOT NULL,
    app_id         TEXT   NOT NULL,
    collector_id   TEXT   NOT NULL,
    record_id      TEXT   NOT NULL,
    content_hash   TEXT   NOT NULL DEFAULT '',
    top_concept_id TEXT   NOT NULL DEFAULT '',
    admitted_at    BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, collector_id, record_id)
);

CREATE INDEX admissions_by_time
    ON admissions (user_id, app_id, collector_id, admitted_at);
CREATE INDEX admissions_by_content
    ON admissions (user_id, app_id, collector_id, content_hash, admitted_at);
CREATE INDEX admissions_by_concept
    ON admissions (user_id, app_id, collector_id, top_concept_id, admitted_at);
-- PruneAdmissions deletes by age across every collector.
CREATE INDEX admissions_by_age ON admissions (admitted_at);

-- previews has one row per collector that ever previewed. next_seq is the
-- sequence number of its next preview record.
CREATE TABLE previews (
    user_id      TEXT   NOT NULL,
    app_id       TEXT   NOT NULL,
    collector_id TEXT   NOT NULL,
    updated_at   BIGINT NOT NULL,
    next_seq     BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, collector_id)
);

CREATE TABLE preview_counts (
    user_id      TEXT   NOT NULL,
    app_id       TEXT   NOT NULL,
    collector_id TEXT   NOT NULL,
    outcome      TEXT   NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, collector_id, outcome)
);

-- record is a clarifai.api.PreviewRecord in protobuf wire form. A higher
-- seq is a newer record.
CREATE TABLE preview_records (
    user_id      TEXT   NOT NULL,
    app_id       TEXT   NOT NULL,
    collector_id TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    record       BYTEA  NOT NULL,
    PRIMARY KEY (user_id, app_id, collector_id, seq)
);
