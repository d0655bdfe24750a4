-- pulse.kpi_daily (issue 12): the adoption KPIs per local day (Asia/Ho_Chi_Minh) and province, computed on
-- read from the deduplicated raw tables (FINAL: each accepted event once, by event_id). A view has no write
-- path of its own, so it cannot drift from the raw tables, and it gives exactly one row per
-- (day, province_code, kpi): every part below groups by (day, province_code) and names its KPIs once.
-- A KPI row exists for a day on which the province has events of that KPI's stream; value is NULL when
-- the denominator is 0. Definitions: ../shared/CONTRACT.md and README, "Adoption KPIs".
CREATE VIEW IF NOT EXISTS {db}.kpi_daily AS
SELECT day, province_code, kpi, numerator, denominator,
       if(denominator = 0, NULL, numerator / denominator) AS value
FROM
(
    SELECT day, province_code, tupleElement(k, 1) AS kpi, tupleElement(k, 2) AS numerator,
           tupleElement(k, 3) AS denominator
    FROM
    (
        SELECT toDate(event_time, 'Asia/Ho_Chi_Minh') AS day, province_code,
               countIf(stage = 'submitted') AS submitted,
               countIf(stage = 'submitted' AND channel = 'online') AS submitted_online,
               countIf(stage = 'submitted' AND channel = 'online' AND vneid_authenticated) AS submitted_vneid,
               countIf(stage = 'returned') AS returned,
               countIf(stage = 'returned' AND event_time <= due_time) AS returned_on_time,
               countIf(stage = 'returned' AND fee_vnd > 0) AS returned_with_fee,
               countIf(stage = 'returned' AND fee_vnd > 0 AND paid_online) AS returned_paid_online,
               countIf(stage = 'returned' AND result_electronic) AS returned_electronic,
               countIf(stage = 'rated') AS rated,
               countIf(stage = 'rated' AND rating >= 4) AS rated_satisfied
        FROM {db}.dossier_events FINAL
        GROUP BY day, province_code
    )
    ARRAY JOIN [
        ('online_dossier_rate', submitted_online, submitted),
        ('vneid_auth_rate', submitted_vneid, submitted_online),
        ('on_time_rate', returned_on_time, returned),
        ('online_payment_rate', returned_paid_online, returned_with_fee),
        ('electronic_result_rate', returned_electronic, returned),
        ('satisfaction_rate', rated_satisfied, rated)
    ] AS k

    UNION ALL

    SELECT toDate(event_time, 'Asia/Ho_Chi_Minh') AS day, province_code, 'qr_success_rate' AS kpi,
           countIf(status = 'success') AS numerator, count() AS denominator
    FROM {db}.payments FINAL
    GROUP BY day, province_code

    UNION ALL

    SELECT toDate(event_time, 'Asia/Ho_Chi_Minh') AS day, province_code, 'vneid_level2_share' AS kpi,
           countIf(step = 'activated' AND level = 2) AS numerator, countIf(step = 'activated') AS denominator
    FROM {db}.id_activations FINAL
    GROUP BY day, province_code

    UNION ALL

    -- Each submitted dossier is open from its submission until it is returned, withdrawn or rejected; it is
    -- counted on every local day of that span (through the latest day with dossier events for one still
    -- open), as open if still open at the end of the day, and overdue if its due time has passed by then.
    -- The due time is the latest one the dossier's events carry.
    SELECT day, province_code, 'overdue_open' AS kpi,
           countIf(is_open AND due_time < day_end) AS numerator, countIf(is_open) AS denominator
    FROM
    (
        SELECT province_code, due_time, day,
               toDateTime64(addDays(day, 1), 3, 'Asia/Ho_Chi_Minh') AS day_end,
               opened < day_end AND (NOT is_closed OR closed >= day_end) AS is_open
        FROM
        (
            SELECT province_code, opened, closed, is_closed, due_time,
                   arrayJoin(arrayMap(n -> addDays(first_day, n),
                                      range(toUInt32(dateDiff('day', first_day, greatest(first_day, last_day)) + 1))))
                       AS day
            FROM
            (
                SELECT province_code, dossier_id,
                       minIf(event_time, stage = 'submitted') AS opened,
                       minIf(event_time, stage IN ('returned', 'withdrawn', 'rejected')) AS closed,
                       countIf(stage IN ('returned', 'withdrawn', 'rejected')) > 0 AS is_closed,
                       argMax(due_time, event_time) AS due_time,
                       toDate(opened, 'Asia/Ho_Chi_Minh') AS first_day,
                       if(is_closed, toDate(closed, 'Asia/Ho_Chi_Minh'), latest.day) AS last_day
                FROM {db}.dossier_events FINAL
                CROSS JOIN
                (
                    SELECT max(toDate(event_time, 'Asia/Ho_Chi_Minh')) AS day FROM {db}.dossier_events FINAL
                ) AS latest
                GROUP BY province_code, dossier_id, latest.day
                HAVING countIf(stage = 'submitted') > 0
            )
        )
    )
    GROUP BY day, province_code

    UNION ALL

    -- From the procedure catalogue: the same value on every day the province has dossier events.
    SELECT days.day, days.province_code, 'full_process_offer_rate' AS kpi,
           offers.offered AS numerator, eligible.procedures AS denominator
    FROM
    (
        SELECT DISTINCT toDate(event_time, 'Asia/Ho_Chi_Minh') AS day, province_code
        FROM {db}.dossier_events FINAL
    ) AS days
    LEFT JOIN
    (
        SELECT province_code, count() AS offered
        FROM {db}.procedure_offers
        WHERE procedure_code IN (SELECT procedure_code FROM {db}.procedure_catalogue WHERE eligible_full_process)
        GROUP BY province_code
    ) AS offers ON offers.province_code = days.province_code
    CROSS JOIN
    (
        SELECT countIf(eligible_full_process) AS procedures FROM {db}.procedure_catalogue
    ) AS eligible
)
-- The view's own joins keep their meaning whatever join_use_nulls the reading query sets.
SETTINGS join_use_nulls = 0;
