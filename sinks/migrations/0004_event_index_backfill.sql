-- Index the events stored before 0003, keeping their storage time (the retention clock). Raw event_ids
-- are validated UUIDs; the filter only keeps a hand-made row from failing the migration.
INSERT INTO {db}.event_index (stream, event_id, fingerprint, topic, partition, offset, event_time, province_code,
                             ingested_at)
SELECT 'payments', toUUID(event_id), 0, '', 0, 0, event_time, province_code, ingested_at FROM {db}.payments
WHERE toUUIDOrNull(event_id) IS NOT NULL;
INSERT INTO {db}.event_index (stream, event_id, fingerprint, topic, partition, offset, event_time, province_code,
                             ingested_at)
SELECT 'dossiers', toUUID(event_id), 0, '', 0, 0, event_time, province_code, ingested_at FROM {db}.dossier_events
WHERE toUUIDOrNull(event_id) IS NOT NULL;
INSERT INTO {db}.event_index (stream, event_id, fingerprint, topic, partition, offset, event_time, province_code,
                             ingested_at)
SELECT 'identity', toUUID(event_id), 0, '', 0, 0, event_time, province_code, ingested_at FROM {db}.id_activations
WHERE toUUIDOrNull(event_id) IS NOT NULL;
