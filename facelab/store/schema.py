"""The catalog's schema, as the ordered list of migrations that build it.

Each migration is applied once, in order, in its own transaction (``Catalog`` does it on
open); a workspace records the last one applied in ``meta.schema_version``. Append a
migration to change the schema; never edit one that has shipped, or existing workspaces and
new ones would differ.
"""

from __future__ import annotations

# Each migration is applied once, in order, in its own transaction; append, never edit.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial schema", """
CREATE SEQUENCE asset_seq START 1;
CREATE SEQUENCE face_seq START 1;
CREATE SEQUENCE person_seq START 1;
CREATE SEQUENCE run_seq START 1;
CREATE SEQUENCE event_seq START 1;
CREATE SEQUENCE suggestion_seq START 1;
CREATE SEQUENCE prototype_seq START 1;

-- one row per distinct image content; identical files share one asset
CREATE TABLE assets (
    asset_id     BIGINT PRIMARY KEY DEFAULT nextval('asset_seq'),
    content_hash VARCHAR NOT NULL UNIQUE,
    size         BIGINT,
    width        INTEGER,          -- as displayed (EXIF orientation applied)
    height       INTEGER,
    orientation  SMALLINT,
    taken_at     TIMESTAMP,
    format       VARCHAR,
    status       VARCHAR NOT NULL DEFAULT 'present',   -- present | missing
    first_seen   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    last_seen    TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- one row per file path seen by a scan; asset_id NULL when the file could not be hashed
CREATE TABLE files (
    path         VARCHAR PRIMARY KEY,
    root         VARCHAR NOT NULL,
    asset_id     BIGINT,
    size         BIGINT,
    mtime_ns     BIGINT,
    error_kind   VARCHAR,
    error_detail VARCHAR,
    scanned_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE spaces (
    space      VARCHAR PRIMARY KEY,
    dim        INTEGER NOT NULL,
    kind       VARCHAR NOT NULL,          -- detector | projection | imported
    model      VARCHAR,
    generation BIGINT NOT NULL DEFAULT 0, -- bumped by every change to the space's vectors
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE faces (
    face_id     BIGINT PRIMARY KEY DEFAULT nextval('face_seq'),
    asset_id    BIGINT NOT NULL,
    space       VARCHAR NOT NULL,          -- the space of the model that detected it
    x DOUBLE NOT NULL, y DOUBLE NOT NULL, w DOUBLE NOT NULL, h DOUBLE NOT NULL,
    det_score   FLOAT NOT NULL,
    quality     FLOAT NOT NULL,
    landmarks   FLOAT[],
    embedding   FLOAT[] NOT NULL,          -- never a face without its vector
    run_id      BIGINT,
    person_id   BIGINT,
    assigned_by VARCHAR,  -- user | cluster_label | suggestion_accept | auto | import
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE INDEX faces_asset ON faces(asset_id);

-- vectors of derived spaces (projections); rebuildable from faces
CREATE TABLE embeddings (
    face_id BIGINT NOT NULL,
    space   VARCHAR NOT NULL,
    vector  FLOAT[] NOT NULL,
    PRIMARY KEY (face_id, space)
);

-- which assets a model has processed: the resume point of every detection run
CREATE TABLE detections (
    asset_id      BIGINT NOT NULL,
    space         VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,        -- ok | error
    n_faces       INTEGER NOT NULL DEFAULT 0,
    error_kind    VARCHAR,
    error_detail  VARCHAR,
    run_id        BIGINT,
    seconds       FLOAT,
    detected_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (asset_id, space)
);

CREATE TABLE persons (
    person_id   BIGINT PRIMARY KEY DEFAULT nextval('person_seq'),
    name        VARCHAR,
    hidden      BOOLEAN NOT NULL DEFAULT false,
    merged_into BIGINT,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE prototypes (
    prototype_id BIGINT PRIMARY KEY DEFAULT nextval('prototype_seq'),
    person_id    BIGINT NOT NULL,
    face_id      BIGINT NOT NULL,
    space        VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,         -- exemplar | centroid | temporal
    pinned       BOOLEAN NOT NULL DEFAULT false,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE centroids (
    person_id   BIGINT NOT NULL,
    space       VARCHAR NOT NULL,
    vector      FLOAT[] NOT NULL,
    n_faces     INTEGER NOT NULL,
    n_trimmed   INTEGER NOT NULL DEFAULT 0,
    computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (person_id, space)
);

CREATE TABLE suggestions (
    suggestion_id BIGINT PRIMARY KEY DEFAULT nextval('suggestion_seq'),
    face_id    BIGINT NOT NULL,
    person_id  BIGINT NOT NULL,
    space      VARCHAR NOT NULL,
    score      FLOAT NOT NULL,
    source     VARCHAR NOT NULL,
    status     VARCHAR NOT NULL DEFAULT 'pending',  -- pending | accepted | rejected | expired
    evidence   JSON,
    run_id     BIGINT,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    decided_at TIMESTAMP
);

-- append-only audit of every change to a face's person
CREATE TABLE events (
    event_id      BIGINT PRIMARY KEY DEFAULT nextval('event_seq'),
    occurred_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    face_id       BIGINT,
    old_person_id BIGINT,
    new_person_id BIGINT,
    source        VARCHAR NOT NULL,
    run_id        BIGINT,
    evidence      JSON
);

CREATE TABLE runs (
    run_id      BIGINT PRIMARY KEY DEFAULT nextval('run_seq'),
    kind        VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,  -- running|done|failed|paused|cancelled|interrupted
    params      JSON,
    summary     JSON,
    error       VARCHAR,
    requested   VARCHAR,                   -- pause | cancel, set by another process
    pid         INTEGER,
    host        VARCHAR,
    resumed_from BIGINT,
    started_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    heartbeat_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at TIMESTAMP
);

CREATE TABLE run_phases (
    run_id      BIGINT NOT NULL,
    phase       VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,          -- pending | running | done | failed | skipped
    total       BIGINT,
    done        BIGINT NOT NULL DEFAULT 0,
    errors      BIGINT NOT NULL DEFAULT 0,
    started_at  TIMESTAMP,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, phase)
);

CREATE VIEW face_vectors AS
    SELECT face_id, space, embedding AS vector FROM faces
    UNION ALL
    SELECT face_id, space, vector FROM embeddings;
"""),
    (2, "people: clusters, face revisions, rejections, centroid modes, prototype roles", """
-- DuckDB cannot add a NOT NULL column to an indexed table: drop the index around it
DROP INDEX faces_asset;
ALTER TABLE faces ADD COLUMN cluster_id VARCHAR;     -- current cluster of an unassigned face
ALTER TABLE faces ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;  -- bumped by every change
                                                     -- of person_id: stale writes are refused
CREATE INDEX faces_asset ON faces(asset_id);

-- one row per cluster ever produced; the id is derived from the sorted member face ids, so a
-- re-run that finds the same members finds the same id
CREATE TABLE clusters (
    cluster_id VARCHAR PRIMARY KEY,
    space      VARCHAR NOT NULL,
    size       INTEGER NOT NULL,
    algorithm  VARCHAR NOT NULL,
    params     JSON,
    run_id     BIGINT,
    status     VARCHAR NOT NULL DEFAULT 'active',   -- active | labeled | retired
    person_id  BIGINT,                              -- set when labeled
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- (face, person) pairs a person ruled out: never suggested or auto-assigned again
CREATE TABLE rejections (
    face_id    BIGINT NOT NULL,
    person_id  BIGINT NOT NULL,
    source     VARCHAR NOT NULL,                    -- suggestion_reject | unassign | remove
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (face_id, person_id)
);

-- a person may have several centroids (one per mode of their faces)
DROP TABLE centroids;
CREATE TABLE centroids (
    person_id   BIGINT NOT NULL,
    space       VARCHAR NOT NULL,
    mode        SMALLINT NOT NULL DEFAULT 0,
    vector      FLOAT[] NOT NULL,
    n_faces     INTEGER NOT NULL,
    n_trimmed   INTEGER NOT NULL DEFAULT 0,
    source_hash VARCHAR NOT NULL,                   -- hash of the member face ids
    algorithm   VARCHAR NOT NULL,                   -- algorithm + version + trimming params
    computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (person_id, space, mode)
);

ALTER TABLE prototypes RENAME COLUMN kind TO role;  -- exemplar | centroid | temporal
ALTER TABLE prototypes ADD COLUMN quality FLOAT;
ALTER TABLE prototypes ADD COLUMN era VARCHAR;      -- temporal prototypes: e.g. '2010-2014'

ALTER TABLE events ADD COLUMN action VARCHAR;       -- assign | unassign | merge | unmerge | ...
ALTER TABLE events ADD COLUMN group_id BIGINT;      -- events of one action (a merge, a run)
ALTER TABLE events ADD COLUMN undone_by BIGINT;     -- group that reverted this event

ALTER TABLE suggestions ADD COLUMN expires_at TIMESTAMP;
"""),
    (3, "calibrated thresholds per space and matching strategy", """
CREATE SEQUENCE threshold_seq START 1;

-- thresholds measured on the user's labels (facelab calibrate); history is kept, the latest
-- row of a (space, strategy) is in force unless settings override it
CREATE TABLE thresholds (
    threshold_id     BIGINT PRIMARY KEY DEFAULT nextval('threshold_seq'),
    space            VARCHAR NOT NULL,
    strategy         VARCHAR NOT NULL,          -- exemplar | centroid | multi
    auto_assign      DOUBLE NOT NULL,
    suggest          DOUBLE NOT NULL,
    target_precision DOUBLE NOT NULL,
    target_recall    DOUBLE NOT NULL,
    confidence       DOUBLE NOT NULL,           -- of the one-sided precision bound
    stranger_share   DOUBLE,                    -- share of strangers assumed (NULL: labels')
    precision        DOUBLE,                    -- point estimate at auto_assign
    precision_lower  DOUBLE,                    -- its lower confidence bound
    coverage         DOUBLE,                    -- share of labeled faces scoring >= auto
    recall           DOUBLE,                    -- share of findable faces rightly auto-assigned
    n_above          BIGINT NOT NULL,
    n_faces          BIGINT NOT NULL,
    n_people         BIGINT NOT NULL,
    created_at       TIMESTAMP NOT NULL DEFAULT current_timestamp,
    evidence         JSON
);
"""),
    (4, "vectors rewritten in place (re-detection)", """
-- the space generation at which some of its vectors were last rewritten in place (a face
-- found again by a re-detection keeps its id and gets a new vector): an index saved at an
-- earlier generation still holds the old vectors under the same keys and is rebuilt
CREATE TABLE vector_rewrites (
    space      VARCHAR PRIMARY KEY,
    generation BIGINT NOT NULL
);
"""),
    (5, "incremental clustering: which faces a clustering has seen", """
-- true once a clustering pass has considered the face (it joined a cluster or stayed noise);
-- `facelab cluster` then only places the faces not seen yet (new photos, an import, a name
-- taken away). Faces already in a cluster were seen; noise faces are looked at once more.
DROP INDEX faces_asset;
ALTER TABLE faces ADD COLUMN clustered BOOLEAN NOT NULL DEFAULT false;
UPDATE faces SET clustered = cluster_id IS NOT NULL;
CREATE INDEX faces_asset ON faces(asset_id);
"""),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
