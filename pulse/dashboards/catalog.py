"""The five dashboards of adoption-pulse: what an operations centre (IOC) watches, and against which targets.

Measures follow docs in ../shared/domain (Decision 766 ratios: numerator / denominator over the chosen time
range). Targets: online dossier rate about 80-89 % (Bắc Giang 80 %, Hải Dương 89 %), 100 % full-process and
100 % VNeID-authenticated (Bạc Liêu 2025 targets), late dossiers above 20 % is bad.
"""
from __future__ import annotations

from collections.abc import Callable

from pulse.dashboards.model import (
    JSON,
    Column,
    Step,
    banks_table,
    barchart,
    bucket,
    dashboard,
    per_minute,
    piechart,
    prom_stat,
    prom_timeseries,
    province_variable,
    provinces_table,
    ratio,
    raw_source,
    region_variable,
    select,
    stat,
    table,
    timeseries,
    window_source,
)

# ---------------------------------------------------------------------------------------------- measures
# SQL aggregates over the window tables (one row per minute and province).

ONLINE_RATE = ratio("sum(submitted_online)", "sum(submitted_online) + sum(submitted_offline)")
FULL_PROCESS_SHARE = ratio("sum(submitted_full_process_online)", "sum(submitted_online)")
ON_TIME_RATE = ratio("sum(completed_on_time)", "sum(completed)")
LATE_RATE = ratio("sum(completed) - sum(completed_on_time)", "sum(completed)")
VNEID_SHARE = ratio("sum(vneid_authenticated)", "sum(submitted_online)")
ONLINE_PAYMENT_RATE = ratio("sum(paid_online)", "sum(completed)")
SUCCESS_RATE = ratio("sum(success_count)", "sum(tx_count)")
AVERAGE_TICKET = ratio("sum(amount_vnd)", "sum(success_count)")
LEVEL2_SHARE = ratio("sum(level2_activations)", "sum(activations)")

# Threshold steps (colour from the lower bound up).
ONLINE_RATE_STEPS: tuple[Step, ...] = (("red", None), ("yellow", 0.8), ("green", 0.89))
FULL_TARGET_STEPS: tuple[Step, ...] = (("red", None), ("yellow", 0.8), ("green", 0.95))
ON_TIME_STEPS: tuple[Step, ...] = (("red", None), ("yellow", 0.8), ("green", 0.95))
LATE_STEPS: tuple[Step, ...] = (("green", None), ("yellow", 0.1), ("red", 0.2))
SUCCESS_STEPS: tuple[Step, ...] = (("red", None), ("yellow", 0.9), ("green", 0.97))
NEUTRAL: tuple[Step, ...] = (("blue", None),)

PERCENT = "percentunit"
VND = "count:₫"  # scaled (K, M, B) with the dong sign

# Titles, Vietnamese first: the IOC staff read Vietnamese, the engineers English.
T_ONLINE_RATE = "Tỷ lệ hồ sơ trực tuyến / Online dossier rate"
T_FULL_PROCESS = "Tỷ lệ DVC toàn trình / Full-process share"
T_ON_TIME = "Tỷ lệ đúng hạn / On-time rate"
T_LATE = "Tỷ lệ trễ hạn / Late rate"
T_VNEID = "Xác thực VNeID / VNeID-authenticated share"
T_ONLINE_PAYMENT = "Thanh toán trực tuyến / Online payment rate"
T_PAYMENTS = "Giao dịch VietQR / Cashless payments"
T_VALUE = "Giá trị không tiền mặt / Cashless value"
T_ACTIVATIONS = "Kích hoạt VNeID / VNeID activations"

D_ONLINE_RATE = "Dossiers submitted online ÷ all dossiers submitted. Target about 80–89 % (green from 89 %)."
D_FULL_PROCESS = ("Online dossiers of full-process services ÷ online dossiers: how much of the online traffic is "
                  "fully online. Not the target measure: targets (Bạc Liêu 100 % in 2025) are about procedures "
                  "offered, full_process_offer_rate on the KPI dashboard.")
D_ON_TIME = "Dossiers returned by their due time ÷ dossiers returned. Late above 20 % is red."
D_LATE = "Dossiers returned after their due time ÷ dossiers returned. Above 20 % is red."
D_VNEID = ("Online dossiers whose submitter authenticated with VNeID ÷ online dossiers. "
           "Target 100 % (Bạc Liêu, 2025).")
D_ONLINE_PAYMENT = ("Returned dossiers paid online ÷ dossiers returned (all, with or without a fee). The KPI "
                    "over dossiers that carry a fee is online_payment_rate on the KPI dashboard.")
D_PAYMENTS = "Successful VietQR payments at markets."
D_VALUE = "Value of successful VietQR payments, in đồng."
D_ACTIVATIONS = "VNeID accounts activated (levels 1 and 2)."


def _stat(title: str, table_name: str, expression: str, unit: str, description: str,
          steps: tuple[Step, ...] = NEUTRAL, size: tuple[int, int] = (4, 4)) -> JSON:
    sql = select([(expression, "value")], window_source(table_name))
    return stat(title, sql, unit=unit, description=description, steps=steps, size=size)


def _series(title: str, table_name: str, columns: list[tuple[str, Column]], unit: str, description: str,
            size: tuple[int, int] = (12, 8)) -> JSON:
    """A time series over one window table: (SQL expression, column) pairs after the time bucket."""
    items = [(bucket("window_start"), "time"), *[(expression, column.name) for expression, column in columns]]
    sql = select(items, window_source(table_name) + "\nGROUP BY time\nORDER BY time")
    return timeseries(title, sql, [column for _, column in columns], unit=unit, description=description, size=size)


# ---------------------------------------------------------------------------------------------- per province

PROVINCE_COLUMNS = [
    Column("code", "Mã / Code"),
    Column("province", "Tỉnh, thành / Province"),
    Column("region", "Vùng / Region"),
]


def _per_province(parts: dict[str, tuple[str, list[tuple[str, str]]]], outputs: list[tuple[str, Column]]) -> str:
    """Provinces joined with per-province aggregates of window tables.

    parts: alias -> (window table, [(aggregate, name)]); outputs: (expression over the aliases, column).
    Every selected province gets a row, with no value where it has no data yet.
    """
    joins = []
    for alias, (table_name, aggregates) in parts.items():
        inner = select([("province_code", "province_code"), *aggregates], window_source(table_name))
        inner += "\nGROUP BY province_code"
        joins.append(f"LEFT JOIN (\n{inner}\n) AS {alias} ON {alias}.province_code = p.code")
    items = [("p.code", "code"), ("p.name", "province"), ("p.region", "region"),
             *[(expression, column.name) for expression, column in outputs]]
    rest = (f"FROM {provinces_table()} AS p\n" + "\n".join(joins)
            + "\nWHERE p.code IN (${province:singlequote})\nORDER BY code\nSETTINGS join_use_nulls = 1")
    return select(items, rest)


DOSSIER_AGGREGATES = [
    ("sum(submitted_online) + sum(submitted_offline)", "submitted"),
    (ONLINE_RATE, "online_rate"),
    (FULL_PROCESS_SHARE, "full_process_share"),
    (ON_TIME_RATE, "on_time_rate"),
    (LATE_RATE, "late_rate"),
    (VNEID_SHARE, "vneid_share"),
    (ONLINE_PAYMENT_RATE, "online_payment_rate"),
]
PAYMENT_AGGREGATES = [
    ("sum(tx_count)", "attempts"),
    ("sum(success_count)", "payments"),
    (SUCCESS_RATE, "success_rate"),
    ("sum(amount_vnd)", "value_vnd"),
    (AVERAGE_TICKET, "average_ticket_vnd"),
]
ACTIVATION_AGGREGATES = [
    ("sum(activations)", "activated"),
    ("sum(level2_activations)", "activated_level2"),
    (LEVEL2_SHARE, "level2_share"),
]

C_ONLINE_RATE = Column("online_rate", "Trực tuyến / Online", PERCENT, ONLINE_RATE_STEPS, 1)
C_FULL_PROCESS = Column("full_process_share", "Toàn trình / Full-process", PERCENT, NEUTRAL, 1)
C_ON_TIME = Column("on_time_rate", "Đúng hạn / On time", PERCENT, ON_TIME_STEPS, 1)
C_LATE = Column("late_rate", "Trễ hạn / Late", PERCENT, LATE_STEPS, 1)
C_VNEID = Column("vneid_share", "VNeID", PERCENT, FULL_TARGET_STEPS, 1)
C_ONLINE_PAYMENT = Column("online_payment_rate", "TT trực tuyến / Paid online", PERCENT, None, 1)
C_PAYMENTS = Column("payments", "Giao dịch / Payments", "short")
C_VALUE = Column("value_vnd", "Giá trị / Value", VND)
C_ACTIVATIONS = Column("activated", "Kích hoạt / Activations", "short")


def _outputs(alias: str, columns: list[Column]) -> list[tuple[str, Column]]:
    return [(f"{alias}.{column.name}", column) for column in columns]


def _per_1000(alias: str, measure: str) -> str:
    """A count per 1,000 residents (population in millions, so × 1,000 gives thousands)."""
    return ratio(f"{alias}.{measure}", "p.population_millions * 1000")


# ---------------------------------------------------------------------------------------------- dashboards


def overview() -> JSON:
    stats = [
        _stat(T_ONLINE_RATE, "dossiers_1m", ONLINE_RATE, PERCENT, D_ONLINE_RATE, ONLINE_RATE_STEPS, (3, 4)),
        _stat(T_FULL_PROCESS, "dossiers_1m", FULL_PROCESS_SHARE, PERCENT, D_FULL_PROCESS, NEUTRAL, (3, 4)),
        _stat(T_ON_TIME, "dossiers_1m", ON_TIME_RATE, PERCENT, D_ON_TIME, ON_TIME_STEPS, (3, 4)),
        _stat(T_VNEID, "dossiers_1m", VNEID_SHARE, PERCENT, D_VNEID, FULL_TARGET_STEPS, (3, 4)),
        _stat(T_ONLINE_PAYMENT, "dossiers_1m", ONLINE_PAYMENT_RATE, PERCENT, D_ONLINE_PAYMENT, NEUTRAL, (3, 4)),
        _stat(T_PAYMENTS, "payments_1m", "sum(success_count)", "short", D_PAYMENTS, NEUTRAL, (3, 4)),
        _stat(T_VALUE, "payments_1m", "sum(amount_vnd)", VND, D_VALUE, NEUTRAL, (3, 4)),
        _stat(T_ACTIVATIONS, "id_activations_1m", "sum(activations)", "short", D_ACTIVATIONS, NEUTRAL, (3, 4)),
    ]
    dossier_columns = [C_ONLINE_RATE, C_FULL_PROCESS, C_ON_TIME, C_VNEID]
    sql = _per_province(
        {"d": ("dossiers_1m", DOSSIER_AGGREGATES), "pay": ("payments_1m", PAYMENT_AGGREGATES),
         "act": ("id_activations_1m", ACTIVATION_AGGREGATES)},
        [*_outputs("d", dossier_columns), *_outputs("pay", [C_PAYMENTS, C_VALUE]), *_outputs("act", [C_ACTIVATIONS])],
    )
    by_province = table(
        "Chỉ số theo tỉnh / KPIs by province", sql,
        [*PROVINCE_COLUMNS, *dossier_columns, C_PAYMENTS, C_VALUE, C_ACTIVATIONS],
        description="Each province against its targets over the chosen time range. " + D_ONLINE_RATE + " "
        + D_FULL_PROCESS + " " + D_ON_TIME + " " + D_VNEID,
        size=(24, 14),
    )
    rates = _series(
        "Xu hướng dịch vụ công / Public-service rates over time", "dossiers_1m",
        [(ONLINE_RATE, Column("online_rate", "Trực tuyến / Online")),
         (ON_TIME_RATE, Column("on_time_rate", "Đúng hạn / On time")),
         (VNEID_SHARE, Column("vneid_share", "VNeID"))],
        PERCENT, "Online dossier rate, on-time rate and VNeID-authenticated share per interval.",
    )
    value = _series(
        "Giá trị thanh toán mỗi phút / Cashless value per minute", "payments_1m",
        [(per_minute("sum(amount_vnd)"), Column("value_per_minute", "Giá trị / Value"))],
        VND, "Value of successful VietQR payments per minute, averaged over the interval.",
    )
    return dashboard(
        "pulse-overview", "Tổng quan chuyển đổi số / Adoption overview",
        description="Per-province digital adoption against targets: online dossiers, VNeID, cashless payments.",
        panels=[*stats, by_province, rates, value], variables=[region_variable(), province_variable()],
        tags=["overview"],
    )


def cashless() -> JSON:
    stats = [
        _stat(T_PAYMENTS, "payments_1m", "sum(success_count)", "short", D_PAYMENTS, size=(6, 4)),
        _stat(T_VALUE, "payments_1m", "sum(amount_vnd)", VND, D_VALUE, size=(6, 4)),
        _stat("Tỷ lệ thành công / Success rate", "payments_1m", SUCCESS_RATE, PERCENT,
              "Successful payments ÷ all payment attempts.", SUCCESS_STEPS, (6, 4)),
        _stat("Giá trị trung bình / Average ticket", "payments_1m", AVERAGE_TICKET, VND,
              "Value ÷ successful payments. Market QR payments are small: tens to hundreds of thousands đồng.",
              size=(6, 4)),
    ]
    volume = _series(
        "Giao dịch mỗi phút / Payments per minute", "payments_1m",
        [(per_minute("sum(tx_count)"), Column("attempts", "Tất cả / All attempts")),
         (per_minute("sum(success_count)"), Column("successful", "Thành công / Successful"))],
        "short", "VietQR payment attempts and successes per minute, averaged over the interval.",
    )
    value = _series(
        "Giá trị mỗi phút / Value per minute", "payments_1m",
        [(per_minute("sum(amount_vnd)"), Column("value_per_minute", "Giá trị / Value"))],
        VND, "Value of successful payments per minute, averaged over the interval.",
    )
    c_per_1000 = Column("payments_per_1000", "Trên 1.000 dân / Per 1,000 residents", "short", None, 2)
    province_columns = [
        C_PAYMENTS, Column("success_rate", "Thành công / Success", PERCENT, SUCCESS_STEPS, 1), C_VALUE,
        Column("average_ticket_vnd", "Trung bình / Average", VND),
    ]
    sql = _per_province(
        {"pay": ("payments_1m", PAYMENT_AGGREGATES)},
        [*_outputs("pay", province_columns), (_per_1000("pay", "payments"), c_per_1000)],
    )
    by_province = table("Thanh toán theo tỉnh / Payments by province", sql,
                        [*PROVINCE_COLUMNS, *province_columns, c_per_1000],
                        description="Successful payments, success rate, value and payments per 1,000 residents.")
    channel = piechart(
        "Loại mã QR / QR type", select(
            [("if(channel = 'vietqr_dynamic', 'QR động / dynamic', 'QR tĩnh / static')", "qr_type"),
             ("countIf(status = 'success')", "payments")],
            raw_source("payments") + "\nGROUP BY qr_type\nORDER BY qr_type"),
        [Column("qr_type", "Loại / Type"), Column("payments", "Giao dịch / Payments", "short")],
        description="Successful payments by static (printed at the stall) or dynamic (amount included) VietQR.",
        size=(6, 9),
    )
    banks = barchart(
        "Ngân hàng người trả / Payer banks", select(
            [("if(b.bank = '', t.payer_bank_bin, b.bank)", "bank"), ("t.payments", "payments")],
            "FROM (\n" + select([("payer_bank_bin", "payer_bank_bin"), ("countIf(status = 'success')", "payments")],
                                raw_source("payments") + "\nGROUP BY payer_bank_bin")
            + f"\n) AS t\nLEFT JOIN {banks_table()} AS b ON b.bin = t.payer_bank_bin"
            "\nORDER BY payments DESC, bank\nLIMIT 10"),
        [Column("bank", "Ngân hàng / Bank"), Column("payments", "Giao dịch / Payments", "short")],
        description="Top 10 banks of the paying customers (by bank BIN), successful payments.", size=(9, 9),
    )
    markets = table(
        "Chợ dẫn đầu / Top markets", select(
            [("market_id", "market_id"), ("any(province_code)", "province"),
             ("uniqExact(merchant_id)", "merchants"), ("countIf(status = 'success')", "payments"),
             ("sumIf(amount_vnd, status = 'success')", "value_vnd")],
            raw_source("payments") + "\nGROUP BY market_id\nORDER BY value_vnd DESC, market_id\nLIMIT 15"),
        [Column("market_id", "Chợ / Market"), Column("province", "Tỉnh / Province"),
         Column("merchants", "Tiểu thương / Merchants", "short"), C_PAYMENTS, C_VALUE],
        description="Markets with the highest cashless value in the time range.", size=(9, 9),
    )
    return dashboard(
        "pulse-cashless", "Chợ không dùng tiền mặt / Cashless markets",
        description="VietQR payments at traditional markets: volume, value, success and reach per province.",
        panels=[*stats, volume, value, by_province, channel, banks, markets],
        variables=[region_variable(), province_variable()], tags=["cashless", "vietqr"],
    )


def public_services() -> JSON:
    stats = [
        _stat(T_ONLINE_RATE, "dossiers_1m", ONLINE_RATE, PERCENT, D_ONLINE_RATE, ONLINE_RATE_STEPS),
        _stat(T_FULL_PROCESS, "dossiers_1m", FULL_PROCESS_SHARE, PERCENT, D_FULL_PROCESS, NEUTRAL),
        _stat(T_ON_TIME, "dossiers_1m", ON_TIME_RATE, PERCENT, D_ON_TIME, ON_TIME_STEPS),
        _stat(T_LATE, "dossiers_1m", LATE_RATE, PERCENT, D_LATE, LATE_STEPS),
        _stat(T_VNEID, "dossiers_1m", VNEID_SHARE, PERCENT, D_VNEID, FULL_TARGET_STEPS),
        _stat(T_ONLINE_PAYMENT, "dossiers_1m", ONLINE_PAYMENT_RATE, PERCENT, D_ONLINE_PAYMENT),
    ]
    submissions = _series(
        "Hồ sơ nộp mỗi phút / Dossiers submitted per minute", "dossiers_1m",
        [(per_minute("sum(submitted_online)"), Column("online", "Trực tuyến / Online")),
         (per_minute("sum(submitted_offline)"), Column("offline", "Trực tiếp / In person")),
         (per_minute("sum(completed)"), Column("returned", "Đã trả kết quả / Returned"))],
        "short", "Dossiers submitted online and in person, and results returned, per minute.",
    )
    rates = _series(
        "Tỷ lệ theo thời gian / Rates over time", "dossiers_1m",
        [(ONLINE_RATE, Column("online_rate", "Trực tuyến / Online")),
         (FULL_PROCESS_SHARE, Column("full_process_share", "Toàn trình / Full-process")),
         (ON_TIME_RATE, Column("on_time_rate", "Đúng hạn / On time")),
         (VNEID_SHARE, Column("vneid_share", "VNeID"))],
        PERCENT, "The Decision 766 ratios per interval.",
    )
    province_columns = [Column("submitted", "Hồ sơ / Dossiers", "short"), C_ONLINE_RATE, C_FULL_PROCESS,
                        C_ON_TIME, C_LATE, C_VNEID, C_ONLINE_PAYMENT]
    by_province = table(
        "Dịch vụ công theo tỉnh / Public services by province",
        _per_province({"d": ("dossiers_1m", DOSSIER_AGGREGATES)}, _outputs("d", province_columns)),
        [*PROVINCE_COLUMNS, *province_columns],
        description=" ".join([D_ONLINE_RATE, D_FULL_PROCESS, D_LATE, D_VNEID]), size=(24, 14),
    )
    stages = barchart(
        "Sự kiện theo bước xử lý / Events by stage", select(
            [("stage", "stage"), ("countIf(channel = 'online')", "online"),
             ("countIf(channel = 'offline')", "offline")],
            raw_source("dossier_events") + "\nGROUP BY stage\nORDER BY online + offline DESC, stage"),
        [Column("stage", "Bước / Stage"), Column("online", "Trực tuyến / Online", "short"),
         Column("offline", "Trực tiếp / In person", "short")],
        description="Dossier events by stage: submitted, accepted, appraised, approved, signed, returned, rejected.",
    )
    procedures = table(
        "Thủ tục nhiều hồ sơ nhất / Busiest procedures", select(
            [("procedure_code", "procedure_code"), ("max(full_process)", "full_process"),
             ("countIf(stage = 'submitted')", "submitted"),
             (ratio("countIf(stage = 'submitted' AND channel = 'online')", "countIf(stage = 'submitted')"),
              "online_rate")],
            raw_source("dossier_events")
            + "\nGROUP BY procedure_code\nORDER BY submitted DESC, procedure_code\nLIMIT 15"),
        [Column("procedure_code", "Mã thủ tục / Procedure"), Column("full_process", "Toàn trình / Full-process"),
         Column("submitted", "Hồ sơ / Dossiers", "short"), C_ONLINE_RATE],
        description="Procedures with the most dossiers submitted, and their online rate.", size=(12, 8),
    )
    return dashboard(
        "pulse-public-services", "Dịch vụ công trực tuyến / Public services",
        description="Online public-service dossiers (Decision 766 ratios) per province, against targets.",
        panels=[*stats, submissions, rates, by_province, stages, procedures],
        variables=[region_variable(), province_variable()], tags=["public-services"],
    )


def identity() -> JSON:
    population = (f"(SELECT sum(population_millions) * 1000 FROM {provinces_table()}\n"
                  "WHERE code IN (${province:singlequote}))")
    per_1000 = stat(
        "Kích hoạt trên 1.000 dân / Activations per 1,000 residents",
        select([(ratio(f"(SELECT sum(activations) {window_source('id_activations_1m')})", population), "value")],
               ""),
        unit="short", decimals=2, description="Activations in the time range per 1,000 residents of the "
        "selected provinces (2025 population).", steps=NEUTRAL, size=(6, 4),
    )
    self_service = stat(
        "Tự kích hoạt / Self-service share",
        select([(ratio("countIf(method = 'self_service')", "count()"), "value")], raw_source("id_activations")),
        unit=PERCENT, description="Activations done by the citizen in the VNeID app (level 1) ÷ all activations.",
        steps=NEUTRAL, size=(6, 4),
    )
    stats = [
        _stat(T_ACTIVATIONS, "id_activations_1m", "sum(activations)", "short", D_ACTIVATIONS, size=(6, 4)),
        _stat("Tỷ lệ mức độ 2 / Level-2 share", "id_activations_1m", LEVEL2_SHARE, PERCENT,
              "Level-2 accounts (fingerprints, registered at a police office) ÷ all activations.", size=(6, 4)),
        per_1000, self_service,
    ]
    over_time = _series(
        "Kích hoạt mỗi phút / Activations per minute", "id_activations_1m",
        [(per_minute("sum(activations) - sum(level2_activations)"), Column("level1", "Mức độ 1 / Level 1")),
         (per_minute("sum(level2_activations)"), Column("level2", "Mức độ 2 / Level 2"))],
        "short", "VNeID activations per minute by account level.", size=(24, 8),
    )
    c_per_1000 = Column("per_1000", "Trên 1.000 dân / Per 1,000 residents", "short", None, 2)
    province_columns = [C_ACTIVATIONS, Column("activated_level2", "Mức độ 2 / Level 2", "short"),
                        Column("level2_share", "Tỷ lệ mức 2 / Level-2 share", PERCENT, None, 1)]
    by_province = table(
        "Định danh điện tử theo tỉnh / Electronic identity by province",
        _per_province({"act": ("id_activations_1m", ACTIVATION_AGGREGATES)},
                      [*_outputs("act", province_columns), (_per_1000("act", "activated"), c_per_1000)]),
        [*PROVINCE_COLUMNS, *province_columns, c_per_1000],
        description="Activations per province, level-2 share and activations per 1,000 residents.",
    )
    methods = piechart(
        "Hình thức / Method", select(
            [("if(method = 'self_service', 'Tự kích hoạt / self-service', 'Công an / police station')",
              "activation_method"),
             ("count()", "activations")],
            raw_source("id_activations") + "\nGROUP BY activation_method\nORDER BY activation_method"),
        [Column("activation_method", "Hình thức / Method"),
         Column("activations", "Kích hoạt / Activations", "short")],
        description="Where accounts were activated.", size=(8, 9),
    )
    ages = barchart(
        "Nhóm tuổi / Age band", select(
            [("age_band", "age_band"), ("countIf(level = 1)", "level1"), ("countIf(level = 2)", "level2")],
            raw_source("id_activations") + "\nGROUP BY age_band\nORDER BY age_band"),
        [Column("age_band", "Nhóm tuổi / Age band"), Column("level1", "Mức độ 1 / Level 1", "short"),
         Column("level2", "Mức độ 2 / Level 2", "short")],
        description="Activations by age band and account level.", size=(16, 9),
    )
    return dashboard(
        "pulse-identity", "Định danh điện tử VNeID / Electronic identity",
        description="VNeID account activations (Project 06) per province, level and method.",
        panels=[*stats, over_time, by_province, methods, ages],
        variables=[region_variable(), province_variable()], tags=["identity", "vneid"],
    )


# ---------------------------------------------------------------------------------------------- pipeline

RATE = "[$__rate_interval]"


def _rate(metric: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{RATE}))"


def _quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{RATE})))"


def _dead_letters_table() -> JSON:
    sql = select(
        [("received_at", "received_at"), ("topic", "topic"), ("`partition`", "`partition`"), ("`offset`", "`offset`"),
         ("reason", "reason"), ("substring(error, 1, 200)", "error")],
        "FROM pulse.dead_letters FINAL\nWHERE $__timeFilter(received_at)\nORDER BY received_at DESC\nLIMIT 100",
    )
    columns = [Column("received_at", "Lúc / Received"), Column("topic", "Topic"), Column("partition", "Partition"),
               Column("offset", "Offset"), Column("reason", "Lý do / Reason"), Column("error", "Lỗi / Error")]
    # The raw message is left out on purpose: an operator screen is no place for payloads.
    return table("Thư lỗi gần đây / Recent dead letters", sql, columns,
                 description="The latest messages sent to pulse.deadletter, from ClickHouse.", size=(24, 10))


def pipeline() -> JSON:
    stats = [
        prom_stat("Tiêu thụ / Consumed", _rate("pulse_events_consumed_total"), unit="ops",
                  description="Messages read from the input topics per second."),
        prom_stat("Tỷ lệ thư lỗi / Dead-letter share",
                  f"{_rate('pulse_events_deadlettered_total')} / {_rate('pulse_events_consumed_total')}",
                  unit=PERCENT, steps=(("green", None), ("yellow", 0.01), ("red", 0.05)),
                  description="Messages dead-lettered ÷ messages consumed."),
        prom_stat("Độ trễ tiêu thụ / Consumer lag", "sum(pulse_consumer_lag_messages)", unit="short",
                  steps=(("green", None), ("yellow", 10000), ("red", 100000)),
                  description="Log end offset minus committed offset, all input partitions."),
        prom_stat("Độ tươi p95 / Freshness p95", _quantile(0.95, "pulse_event_freshness_seconds"), unit="s",
                  steps=(("green", None), ("yellow", 5), ("red", 30)),
                  description="Kafka message timestamp to its window row in ClickHouse, 95th percentile."),
        prom_stat("Trễ watermark / Watermark lag",
                  "time() - min(max by (stream) (pulse_watermark_timestamp_seconds))", unit="s",
                  steps=(("green", None), ("yellow", 120), ("red", 600)),
                  description="Wall clock minus event-time watermark, worst stream. 600 s is the allowed lateness."),
        prom_stat("Lần ghi cuối / Since last flush", "time() - max(pulse_sink_last_success_timestamp_seconds)",
                  unit="s", steps=(("green", None), ("yellow", 30), ("red", 120)),
                  description="Seconds since the last successful ClickHouse flush."),
    ]
    flows = [
        prom_timeseries("Tiêu thụ và chấp nhận / Consumed and accepted",
                        [(_rate("pulse_events_consumed_total", "stream"), "consumed {{stream}}"),
                         (_rate("pulse_events_accepted_total", "stream"), "accepted {{stream}}")],
                        unit="ops", description="Messages consumed and events accepted per second, by stream."),
        prom_timeseries("Thư lỗi / Dead letters", [(_rate("pulse_events_deadlettered_total", "stream, reason"),
                                                    "{{stream}} {{reason}}")],
                        unit="ops", description="Messages sent to pulse.deadletter per second, by stream and reason."),
        prom_timeseries("Trùng lặp và đến muộn / Duplicates and late events",
                        [(_rate("pulse_duplicates_dropped_total", "stream"), "duplicate {{stream}}"),
                         (_rate("pulse_late_events_total", "stream"), "late {{stream}}"),
                         (_rate("pulse_too_late_events_total", "stream"), "too late {{stream}}")],
                        unit="ops", description="Duplicates dropped, late events accepted, events beyond lateness."),
        prom_timeseries("Độ trễ tiêu thụ / Consumer lag",
                        [("sum by (topic) (pulse_consumer_lag_messages)", "{{topic}}")], unit="short",
                        description="Messages not yet committed, by topic."),
        prom_timeseries("Độ trễ theo thời gian / Lag in seconds",
                        [("max by (topic) (pulse_consumer_lag_seconds)", "{{topic}}")], unit="s",
                        description="While messages wait: age of the last stored message (Kafka timestamp), by topic."),
        prom_timeseries("Độ tươi dữ liệu / Freshness",
                        [(_quantile(q, "pulse_event_freshness_seconds"), f"p{int(q * 100)}")
                         for q in (0.5, 0.95, 0.99)],
                        unit="s", description="Kafka message timestamp to its window row written in ClickHouse."),
        prom_timeseries("Trễ watermark / Watermark lag",
                        [("time() - max by (stream) (pulse_watermark_timestamp_seconds)", "{{stream}}")], unit="s",
                        steps=(("green", None), ("red", 600)),
                        description="Wall clock minus event-time watermark, by stream."),
        prom_timeseries("Ghi ClickHouse / Rows written",
                        [(_rate("pulse_sink_rows_written_total", "table"), "{{table}}"),
                         (_rate("pulse_window_rows_emitted_total", "table"), "windows {{table}}")],
                        unit="ops", description="Rows inserted into ClickHouse and window rows emitted, per table."),
        prom_timeseries("Lỗi ghi / Sink failures", [(_rate("pulse_sink_failures_total"), "failed flushes")],
                        unit="ops", steps=(("green", None), ("red", 0.01)),
                        description="Failed sink flush attempts per second (each retry counts)."),
        prom_timeseries("Bộ đệm ghi / Sink buffer",
                        [("sum(pulse_sink_buffered_rows)", "buffered rows"),
                         ("max(pulse_sink_buffer_limit_rows)", "limit (consumption pauses)")],
                        unit="short", description="Rows waiting to be written, against the bound of the buffer."),
        prom_timeseries("Thời gian ghi / Flush duration",
                        [(_quantile(q, "pulse_sink_batch_duration_seconds"), f"p{int(q * 100)}") for q in (0.5, 0.95)],
                        unit="s", description="Time of one sink flush (all tables)."),
        prom_timeseries("Mô phỏng / Simulator",
                        [(_rate("pulse_simulator_events_produced_total", "stream"), "produced {{stream}}"),
                         (_rate("pulse_simulator_faults_injected_total", "kind"), "fault {{kind}}")],
                        unit="ops", description="Events produced and faults injected by `pulse simulate`."),
    ]
    return dashboard(
        "pulse-pipeline", "Sức khỏe hệ thống / Pipeline health",
        description="Kafka -> worker -> ClickHouse: throughput, dead letters, lag, freshness, sink.",
        panels=[*stats, *flows, _dead_letters_table()], tags=["pipeline"], time_from="now-1h", refresh="10s",
    )


# ---------------------------------------------------------------------------------------------- KPIs and ranking
# From the views pulse.kpi_daily (local days) and pulse.service_index_monthly, and the pulse.targets table:
# docs/service-index.md. Days and months are Asia/Ho_Chi_Minh dates, so the range is cut on local dates.

LOCAL_DAYS = ("day >= toDate($__fromTime, 'Asia/Ho_Chi_Minh') AND day <= toDate($__toTime, 'Asia/Ho_Chi_Minh')")
LOCAL_MONTHS = ("month >= toStartOfMonth(toDate($__fromTime, 'Asia/Ho_Chi_Minh')) "
                "AND month <= toDate($__toTime, 'Asia/Ho_Chi_Minh')")
INDEX_GROUPS = [("publicity", "Công khai / Publicity (18)"), ("progress", "Tiến độ / Progress (20)"),
                ("digitization", "Số hóa / Digitization (22)"), ("online_service", "Trực tuyến / Online (22)"),
                ("satisfaction", "Hài lòng / Satisfaction (18)"), ("total", "Tổng / Total (100)")]
DAILY_KPIS = [("online_dossier_rate", "Trực tuyến / Online"), ("on_time_rate", "Đúng hạn / On time"),
              ("vneid_auth_rate", "VNeID"), ("electronic_result_rate", "KQ điện tử / Electronic result"),
              ("overdue_open", "Quá hạn đang mở / Overdue open"),
              ("online_payment_rate", "TT trực tuyến (có phí) / Paid online (with fee)"),
              ("full_process_offer_rate", "DVC toàn trình / Full-process offered")]
ATTAINMENT_STEPS: tuple[Step, ...] = (("red", None), ("yellow", 0.9), ("green", 1.0))
INDEX_STEPS: tuple[Step, ...] = (("red", None), ("yellow", 70), ("green", 85))


def _kpi_ratio(kpi: str) -> str:
    return ratio(f"sumIf(numerator, kpi = '{kpi}')", f"sumIf(denominator, kpi = '{kpi}')")


def _index_ranking() -> JSON:
    """All 34 units ranked by their mean monthly index over the range (the province filter does not apply:
    a rank is among all 34)."""
    groups = ",\n    ".join(f"avg({name}) AS {name}" for name, _ in INDEX_GROUPS)
    inner = (f"SELECT province_code,\n    {groups}\nFROM pulse.service_index_monthly\nWHERE {LOCAL_MONTHS}\n"
             "GROUP BY province_code")
    items = [("if(isNull(s.total), NULL, rank() OVER (ORDER BY s.total DESC NULLS LAST))", "rank"),
             ("p.code", "code"), ("p.name", "province"), *[(f"s.{name}", name) for name, _ in INDEX_GROUPS]]
    sql = select(items, f"FROM {provinces_table()} AS p\nLEFT JOIN (\n{inner}\n) AS s ON s.province_code = p.code"
                        "\nORDER BY s.total IS NULL, s.total DESC, code\nSETTINGS join_use_nulls = 1")
    columns = [Column("rank", "Hạng / Rank", "none", None, 0), Column("code", "Mã / Code"),
               Column("province", "Tỉnh, thành / Province"),
               *[Column(name, label, "none", INDEX_STEPS if name == "total" else None, 1)
                 for name, label in INDEX_GROUPS]]
    return table("Xếp hạng 34 tỉnh theo Chỉ số 766 / 34-province ranking, Decision 766 index", sql, columns,
                 description="Mean monthly Decision 766 index (five groups, 100 points) over the months of the range, "
                             "all 34 units ranked; no rank without a total (a group without data). Formulas and "
                             "their assumptions: docs/service-index.md.", size=(24, 14))


def _attainment() -> JSON:
    """Each selected province's KPI over the range against its target for the range's (last) year."""
    inner = select([("province_code", "province_code"), ("kpi", "kpi"), ("toYear(max(day))", "year"),
                    (ratio("sum(numerator)", "sum(denominator)"), "value")],
                   f"FROM pulse.kpi_daily\nWHERE {LOCAL_DAYS} AND province_code IN (${{province:singlequote}})"
                   "\nGROUP BY province_code, kpi")
    items = [("k.kpi", "kpi"), ("k.province_code", "code"), ("p.name", "province"), ("k.value", "value"),
             ("t.target", "target"), (ratio("k.value", "t.target"), "attainment"), ("t.source", "source")]
    sql = select(items, f"FROM (\n{inner}\n) AS k\n"
                        "INNER JOIN pulse.targets AS t ON t.province_code = k.province_code AND t.kpi = k.kpi "
                        f"AND t.year = k.year\nINNER JOIN {provinces_table()} AS p ON p.code = k.province_code"
                        "\nORDER BY kpi, attainment, code")
    columns = [Column("kpi", "Chỉ số / KPI"), Column("code", "Mã / Code"), Column("province", "Tỉnh / Province"),
               Column("value", "Đạt / Value", PERCENT, None, 1),
               Column("target", "Mục tiêu / Target", PERCENT, None, 0),
               Column("attainment", "Mức đạt / Attainment", PERCENT, ATTAINMENT_STEPS, 0),
               Column("source", "Nguồn / Source")]
    return table("Mức đạt mục tiêu / Target attainment", sql, columns,
                 description="KPI over the range (summed numerators ÷ summed denominators of pulse.kpi_daily) "
                             "÷ the province's target for that year (pulse.targets, with its source); below 100 % "
                             "is behind target.", size=(24, 12))


def kpis() -> JSON:
    index = stat("Chỉ số 766 trung bình / Mean Decision 766 index",
                 select([("avg(total)", "value")], f"FROM pulse.service_index_monthly\nWHERE {LOCAL_MONTHS} "
                                                  f"AND province_code IN (${{province:singlequote}})"),
                 unit="none", steps=INDEX_STEPS, size=(6, 8),
                 description="Mean of the selected provinces' monthly index totals (of 100) over the range.")
    daily_items = [("toDateTime(day)", "time"), *[(_kpi_ratio(kpi), kpi) for kpi, _ in DAILY_KPIS]]
    daily = timeseries("KPI theo ngày / KPIs per local day",
                       select(daily_items, f"FROM pulse.kpi_daily\nWHERE {LOCAL_DAYS} AND "
                                           "province_code IN (${province:singlequote})\nGROUP BY time\nORDER BY time"),
                       [Column(kpi, label) for kpi, label in DAILY_KPIS], unit=PERCENT, size=(18, 8),
                       description="Daily KPIs of pulse.kpi_daily (days in Asia/Ho_Chi_Minh), "
                                   "selected provinces together.")
    return dashboard(
        "pulse-kpis", "Chỉ số, mục tiêu, xếp hạng / KPIs, targets and ranking",
        description="Daily adoption KPIs, attainment of provincial and national targets, and the Decision 766 "
                    "index ranking of the 34 units.",
        panels=[index, daily, _attainment(), _index_ranking()], variables=[region_variable(), province_variable()],
        tags=["kpi", "ranking"], time_from="now-30d",
    )


DASHBOARDS: tuple[Callable[[], JSON], ...] = (overview, cashless, public_services, identity, pipeline, kpis)
