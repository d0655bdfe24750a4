-- The watermark quorum (README, "Event time"): a partition's watermark is the N-th highest accepted event
-- time, so the N highest are kept with it (Unix seconds), and a restarted or rebalanced worker goes on
-- exactly where the last one stopped. Rows from before this migration have none: their watermark then
-- stands for all N.
ALTER TABLE {db}.stream_offsets ADD COLUMN IF NOT EXISTS watermark_leaders Array(Float64) AFTER watermark;
