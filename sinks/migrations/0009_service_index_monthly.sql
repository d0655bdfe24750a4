-- pulse.service_index_monthly (issue 12): the Decision 766/QĐ-TTg (2022) service index per local month
-- and province, five groups with the decision's maxima (18 + 20 + 22 + 22 + 18 = 100 points). Each group
-- is its maximum times a share; which share stands for which group is in docs/service-index.md, with the
-- parts that are assumptions marked. Month-level shares are ratios of the month's summed numerators and
-- denominators (not means of daily ratios). A group whose share has no denominator in the month is NULL,
-- and so is the total. One row per (month, province_code) with dossier events in that month.
CREATE VIEW IF NOT EXISTS {db}.service_index_monthly AS
SELECT month, province_code,
       18 * published_share AS publicity,
       20 * on_time_share AS progress,
       22 * electronic_share AS digitization,
       22 * (full_process_share + online_share + paid_online_share) / 3 AS online_service,
       18 * satisfied_share AS satisfaction,
       publicity + progress + digitization + online_service + satisfaction AS total
FROM
(
    SELECT toStartOfMonth(day) AS month, province_code,
           sumIf(numerator, kpi = 'on_time_rate') / nullIf(sumIf(denominator, kpi = 'on_time_rate'), 0)
               AS on_time_share,
           sumIf(numerator, kpi = 'electronic_result_rate')
               / nullIf(sumIf(denominator, kpi = 'electronic_result_rate'), 0) AS electronic_share,
           sumIf(numerator, kpi = 'online_dossier_rate')
               / nullIf(sumIf(denominator, kpi = 'online_dossier_rate'), 0) AS online_share,
           sumIf(numerator, kpi = 'online_payment_rate')
               / nullIf(sumIf(denominator, kpi = 'online_payment_rate'), 0) AS paid_online_share,
           sumIf(numerator, kpi = 'satisfaction_rate') / nullIf(sumIf(denominator, kpi = 'satisfaction_rate'), 0)
               AS satisfied_share,
           -- the catalogue share is the same on every day: the month's last day holds the current one
           argMaxIf(value, day, kpi = 'full_process_offer_rate') AS full_process_share
    FROM {db}.kpi_daily
    GROUP BY month, province_code
    HAVING countIf(kpi = 'online_dossier_rate') > 0
) AS shares
LEFT JOIN
(
    -- Dossiers submitted in the month whose handling is visible: at least one event after submission.
    SELECT toStartOfMonth(toDate(opened, 'Asia/Ho_Chi_Minh')) AS month, province_code,
           countIf(followed) / count() AS published_share
    FROM
    (
        SELECT province_code, dossier_id, minIf(event_time, stage = 'submitted') AS opened,
               countIf(stage != 'submitted') > 0 AS followed
        FROM {db}.dossier_events FINAL
        GROUP BY province_code, dossier_id
        HAVING countIf(stage = 'submitted') > 0
    )
    GROUP BY month, province_code
) AS published USING (month, province_code)
SETTINGS join_use_nulls = 0;
