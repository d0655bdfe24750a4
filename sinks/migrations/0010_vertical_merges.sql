-- Background merges of the tables that grow by one row per event merge column by column (the vertical
-- algorithm) instead of all columns at once. A horizontal merge holds a read and a write buffer for every
-- column of every part it merges at the same time; a vertical one merges the sorting key's columns first,
-- then each other column on its own. ClickHouse's defaults use it only from 131,072 rows and 11 columns, which
-- leaves event_index and id_activations (fewer columns) and every smaller merge horizontal. Measured with
-- tools/memory_probe.py at 1,000,000 events: peak anonymous memory of the batch path 226-237 MB against
-- 244-265 MB, at the same speed (docs/perf/issue-14-r4m-memory.md). Stored rows are the same either way.
ALTER TABLE {db}.payments MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1;
ALTER TABLE {db}.payments MODIFY SETTING vertical_merge_algorithm_min_columns_to_activate = 1;
ALTER TABLE {db}.dossier_events MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1;
ALTER TABLE {db}.dossier_events MODIFY SETTING vertical_merge_algorithm_min_columns_to_activate = 1;
ALTER TABLE {db}.id_activations MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1;
ALTER TABLE {db}.id_activations MODIFY SETTING vertical_merge_algorithm_min_columns_to_activate = 1;
ALTER TABLE {db}.event_index MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1;
ALTER TABLE {db}.event_index MODIFY SETTING vertical_merge_algorithm_min_columns_to_activate = 1;
ALTER TABLE {db}.dead_letters MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1;
ALTER TABLE {db}.dead_letters MODIFY SETTING vertical_merge_algorithm_min_columns_to_activate = 1;
