-- Raw tables: one row per accepted event. ReplacingMergeTree on a key that ends in event_id,
-- so a duplicate (same event, delivered again or replayed) collapses under FINAL.
CREATE TABLE IF NOT EXISTS {db}.payments
(
    event_id String,
    event_time DateTime64(3, 'UTC'),
    province_code LowCardinality(String),
    market_id String,
    merchant_id String,
    payer_bank_bin LowCardinality(String),
    payee_bank_bin LowCardinality(String),
    payee_account_masked String,
    amount_vnd UInt64,
    channel LowCardinality(String),
    status LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (toStartOfMinute(event_time), province_code, event_id);

CREATE TABLE IF NOT EXISTS {db}.dossier_events
(
    event_id String,
    event_time DateTime64(3, 'UTC'),
    province_code LowCardinality(String),
    dossier_id String,
    procedure_code LowCardinality(String),
    full_process Bool,
    channel LowCardinality(String),
    stage LowCardinality(String),
    due_time DateTime64(3, 'UTC'),
    paid_online Bool,
    vneid_authenticated Bool,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (toStartOfMinute(event_time), province_code, event_id);

CREATE TABLE IF NOT EXISTS {db}.id_activations
(
    event_id String,
    event_time DateTime64(3, 'UTC'),
    province_code LowCardinality(String),
    citizen_ref String,
    level UInt8,
    method LowCardinality(String),
    age_band LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (toStartOfMinute(event_time), province_code, event_id);

-- One row per rejected message, keyed by where it came from, so reprocessing a batch rewrites, not adds.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    topic LowCardinality(String),
    partition UInt32,
    offset UInt64,
    key String,
    reason LowCardinality(String),
    error String,
    raw String,
    received_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (topic, partition, offset);

-- Window tables: a row is always the full recomputation of its window from the raw table, so the
-- row with the highest version (the number of events it covers) is the complete one. Read with FINAL.
CREATE TABLE IF NOT EXISTS {db}.payments_1m
(
    window_start DateTime('UTC'),
    province_code LowCardinality(String),
    tx_count UInt64,
    success_count UInt64,
    amount_vnd UInt64,
    version UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, province_code);

CREATE TABLE IF NOT EXISTS {db}.dossiers_1m
(
    window_start DateTime('UTC'),
    province_code LowCardinality(String),
    submitted_online UInt64,
    submitted_offline UInt64,
    submitted_full_process_online UInt64,
    completed UInt64,
    completed_on_time UInt64,
    paid_online UInt64,
    vneid_authenticated UInt64,
    version UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, province_code);

CREATE TABLE IF NOT EXISTS {db}.id_activations_1m
(
    window_start DateTime('UTC'),
    province_code LowCardinality(String),
    activations UInt64,
    level2_activations UInt64,
    version UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, province_code);

-- Per input partition: the last offset whose effects are in the tables above, and that partition's
-- event-time watermark at that point. A restarted or rebalanced worker skips what is already here.
CREATE TABLE IF NOT EXISTS {db}.stream_offsets
(
    topic LowCardinality(String),
    partition UInt32,
    offset UInt64,
    watermark DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(offset)
ORDER BY (topic, partition);
