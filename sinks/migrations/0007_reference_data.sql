-- Reference data for the adoption KPIs (issue 12), loaded from schemas/data/*.csv by sinks/reference.py
-- whenever the files change (a content hash per table in reference_versions).
CREATE TABLE IF NOT EXISTS {db}.procedure_catalogue
(
    procedure_code String,
    sector LowCardinality(String),
    eligible_full_process Bool,
    fee_vnd UInt64,
    deadline_working_days Float32
)
ENGINE = MergeTree
ORDER BY procedure_code;

-- One row per (province, procedure) that the province offers full-process online.
CREATE TABLE IF NOT EXISTS {db}.procedure_offers
(
    province_code LowCardinality(String),
    procedure_code String
)
ENGINE = MergeTree
ORDER BY (province_code, procedure_code);

CREATE TABLE IF NOT EXISTS {db}.targets
(
    province_code LowCardinality(String),
    kpi LowCardinality(String),
    year UInt16,
    target Float64,
    source String
)
ENGINE = MergeTree
ORDER BY (province_code, kpi, year);

CREATE TABLE IF NOT EXISTS {db}.reference_versions
(
    name String,
    sha256 String,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY name;
