-- One event, one count (README, "Event time"). The raw tables are sorted by minute and province, so two
-- copies of one event_id in different minutes or provinces are two rows there. This table holds the
-- first stored copy of every event_id, sorted by event_id, so the worker finds a batch's stored copies
-- in one lookup; `fingerprint` is a digest of the copy's content (streams.pipeline.fingerprint), 0 for
-- copies stored before this migration (taken as equal to any later copy: the first one still wins).
-- topic/partition/offset: the message the copy came from, so that the same message read again after a
-- crash is recognised as itself, not as a copy ('' and 0 for events stored before this migration).
-- Same retention as the raw rows (0002): the guarantee holds for 400 days after a copy was stored.
CREATE TABLE IF NOT EXISTS {db}.event_index
(
    stream LowCardinality(String),
    event_id UUID,
    fingerprint UInt64,
    topic LowCardinality(String),
    partition UInt32,
    offset UInt64,
    event_time DateTime64(3, 'UTC'),
    province_code LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (stream, event_id)
TTL toDateTime(ingested_at) + INTERVAL 400 DAY
SETTINGS index_granularity = 1024;
