-- Event fields added by issue 12. Rows stored before this migration read the events' own defaults:
-- no sector, no fee, no electronic result, no rating; market payments; finished activations.
ALTER TABLE {db}.dossier_events ADD COLUMN IF NOT EXISTS sector LowCardinality(String) DEFAULT '';
ALTER TABLE {db}.dossier_events ADD COLUMN IF NOT EXISTS fee_vnd UInt64 DEFAULT 0;
ALTER TABLE {db}.dossier_events ADD COLUMN IF NOT EXISTS result_electronic Bool DEFAULT false;
ALTER TABLE {db}.dossier_events ADD COLUMN IF NOT EXISTS rating UInt8 DEFAULT 0;
ALTER TABLE {db}.payments ADD COLUMN IF NOT EXISTS category LowCardinality(String) DEFAULT 'market';
ALTER TABLE {db}.id_activations ADD COLUMN IF NOT EXISTS step LowCardinality(String) DEFAULT 'activated';
