-- Retention (README, "Privacy"). Raw events are deleted 400 days after they were stored (a year of
-- history plus a margin for year-on-year checks and corrections); dead letters, which may hold masked
-- fragments of bad input, 90 days after they were stored. Window tables hold no personal data and are
-- kept. Clocks run from storage, not from event time, so a backfill of old events is not deleted
-- while it is being counted, and a replay older than the retention cannot lower a window: its
-- recomputed row covers fewer events (a lower version) than the stored one, which
-- ReplacingMergeTree(version) keeps.
-- ClickHouse drops expired rows in merges; after MODIFY TTL it also rewrites existing parts once
-- (materialize_ttl_after_modify, on by default).
ALTER TABLE {db}.payments MODIFY TTL toDateTime(ingested_at) + INTERVAL 400 DAY;
ALTER TABLE {db}.dossier_events MODIFY TTL toDateTime(ingested_at) + INTERVAL 400 DAY;
ALTER TABLE {db}.id_activations MODIFY TTL toDateTime(ingested_at) + INTERVAL 400 DAY;
-- dead_letters.received_at is informational (tests backdate it); stored_at is the retention clock.
-- Rows stored before this migration start their 90 days now.
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS stored_at DateTime('UTC') DEFAULT now();
ALTER TABLE {db}.dead_letters MATERIALIZE COLUMN stored_at;
ALTER TABLE {db}.dead_letters MODIFY TTL stored_at + INTERVAL 90 DAY;
