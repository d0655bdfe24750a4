"""Statistical checks: what the simulators emit matches the scenario they were given.

Runs are seeded, so each check is deterministic; tolerances are several standard errors wide for the sample
sizes used (given in the comments), yet tight enough that a broken calibration fails them.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter
from datetime import datetime, timedelta

import pytest

from schemas.provinces import provinces
from simulators import scenario
from simulators.scenario import province_setting, special_days
from tests.simulators.conftest import FOUR_WEEKS_SPEED, RATE, START, VN, WEEK_S, Run, current, generate, local, ts

DEFAULT = scenario.load("default")


def _settled(run: Run) -> dict[str, list[dict]]:
    """Dossiers (events in order) submitted early enough that their lifecycle could finish within the run
    whether late or not: a late one takes up to 1.6 times its deadline (in office time), so twice the span
    from submission to due time plus four days (a weekend and a holiday) is enough. Chosen by due time only,
    never by outcome, so the late share is not biased."""
    dossiers: dict[str, list[dict]] = {}
    for event in run.of("dossier"):
        dossiers.setdefault(event["dossier_id"], []).append(event)
    end = max(ts(e["event_time"]) for e in run.of("dossier"))

    def finishes(events: list[dict]) -> bool:
        submitted, due = ts(events[0]["event_time"]), ts(events[0]["due_time"])
        return submitted + 2 * (due - submitted) + 4 * 86400 < end

    return {k: v for k, v in dossiers.items() if v[0]["stage"] == "submitted" and finishes(v)}


def _late_share(dossiers: dict[str, list[dict]], keep=lambda code: True) -> tuple[float, int]:
    returned = [e for v in dossiers.values() for e in v
                if e["stage"] == "returned" and keep(current(e["province_code"]))]
    late = sum(ts(e["event_time"]) > ts(e["due_time"]) for e in returned)
    return late / len(returned), len(returned)


# -- payments -------------------------------------------------------------------------------------
def _market(run: Run) -> list[dict]:
    """Market payments: the stream the market calibration (stalls, amounts, rhythm) is about."""
    return [p for p in run.of("payment") if p["category"] == "market"]


def test_payment_failure_and_dynamic_shares(default_run: Run) -> None:
    payments = _market(default_run)
    assert len(payments) > 35_000  # of about 45,000 payments, 89 % at markets
    failure = sum(p["status"] == "failed" for p in default_run.of("payment")) / len(default_run.of("payment"))
    dynamic = sum(p["channel"] == "vietqr_dynamic" for p in payments) / len(payments)
    assert failure == pytest.approx(DEFAULT["payments"]["failure_rate"], abs=0.003)  # s.e. 0.0007
    # Static/dynamic is a property of the merchant (≈ 7,600 merchants): s.e. about 0.006.
    assert dynamic == pytest.approx(DEFAULT["payments"]["dynamic_share"], abs=0.025)


def test_amounts_are_log_normal_around_tens_of_thousands(default_run: Run) -> None:
    amounts = sorted(p["amount_vnd"] for p in _market(default_run))
    assert all(a >= 1000 and a % 1000 == 0 for a in amounts)
    median = statistics.median(amounts)
    assert median == pytest.approx(DEFAULT["payments"]["amount_median_vnd"], rel=0.05)
    assert 10_000 <= median <= 100_000
    logs = [math.log(a) for a in amounts]
    q1, _, q3 = statistics.quantiles(logs, n=4)
    assert (q3 - q1) / 1.34898 == pytest.approx(DEFAULT["payments"]["amount_sigma"], abs=0.06)
    skew = statistics.mean(amounts) / median  # log-normal: mean/median = exp(sigma^2 / 2) ≈ 1.5
    assert skew == pytest.approx(math.exp(DEFAULT["payments"]["amount_sigma"] ** 2 / 2), rel=0.08)


def _chi_square(observed: Counter, weights: dict[str, float]) -> float:
    total, weight_sum = sum(observed.values()), sum(weights.values())
    return sum((observed.get(code, 0) - total * w / weight_sum) ** 2 / (total * w / weight_sum)
               for code, w in weights.items())


def test_payment_provinces_follow_population_times_cashless(default_run: Run) -> None:
    observed = Counter(current(p["province_code"]) for p in _market(default_run))
    units = provinces()
    weights = {c: u.population_millions * province_setting(DEFAULT, c, "cashless", 1.0) for c, u in units.items()}
    # 33 degrees of freedom: P(chi2 > 70) ≈ 2e-4.
    assert _chi_square(observed, weights) < 70
    # Power: population alone (ignoring the cashless factors of Hà Nội, HCMC, Bắc Ninh) is far off.
    assert _chi_square(observed, {c: u.population_millions for c, u in units.items()}) > 500
    total = sum(observed.values())
    assert observed["79"] / total == pytest.approx(weights["79"] / sum(weights.values()), abs=0.006)


def _expected(section: dict, first: float, last: float, by: str) -> list[float]:
    """Shares per local hour (by="hour") or weekday (by="weekday") that the scenario implies over
    [first, last]: hourly x weekly x special days, integrated hour by hour."""
    specials = special_days(section)
    weight = [0.0] * (24 if by == "hour" else 7)
    moment = first // 3600 * 3600
    while moment < last:
        covered = min(moment + 3600, last) - max(moment, first)
        at = datetime.fromtimestamp(moment, VN)
        weight[at.hour if by == "hour" else at.weekday()] += (
            section["hourly"][at.hour] * section["weekly"][at.weekday()] * specials.get(at.date(), 1.0) * covered)
        moment += 3600
    return [w / sum(weight) for w in weight]


def test_payment_hours_have_market_morning_and_afternoon_peaks(default_run: Run) -> None:
    payments = _market(default_run)
    hours = Counter(local(p["event_time"]).hour for p in payments)
    shares = [hours[h] / len(payments) for h in range(24)]
    first = min(ts(p["event_time"]) for p in payments)
    last = max(ts(p["event_time"]) for p in payments)
    expected = _expected(DEFAULT["payments"], first, last, "hour")
    # ≈ 2,000-4,000 payments per busy hour: s.e. of a share ≤ 0.0013.
    assert max(abs(o - e) for o, e in zip(shares, expected)) < 0.006
    morning = max(range(4, 12), key=shares.__getitem__)
    afternoon = max(range(12, 21), key=shares.__getitem__)
    assert morning in (6, 7) and afternoon in (16, 17)
    assert shares[12] + shares[13] < 0.55 * (shares[morning] + shares[afternoon])  # midday lull
    assert sum(shares[0:4]) < 0.3 * shares[morning]  # night


def test_payment_weekly_rhythm(default_run: Run) -> None:
    payments = _market(default_run)
    days = Counter(local(p["event_time"]).weekday() for p in payments)
    times = [ts(p["event_time"]) for p in payments]
    expected = _expected(DEFAULT["payments"], min(times), max(times), "weekday")
    # Four weeks: ≈ 6,000-7,500 payments per weekday, s.e. of a share ≈ 0.0015.
    for weekday in range(7):
        assert days[weekday] / len(payments) == pytest.approx(expected[weekday], abs=0.006), weekday
    per_day = {weekday: days[weekday] / len({local(p["event_time"]).date() for p in payments
                                             if local(p["event_time"]).weekday() == weekday}) for weekday in (1, 5)}
    assert per_day[5] > 1.15 * per_day[1]  # Saturday markets are busier than Tuesday's


def test_payer_banks_follow_market_share(default_run: Run) -> None:
    from schemas.banks import MARKET_SHARE_WEIGHTS

    payments = _market(default_run)
    payers = Counter(p["payer_bank_bin"] for p in payments)
    for bin_ in ("970436", "970422", "970405", "970437"):  # Vietcombank, MBBank, Agribank, HDBank
        assert payers[bin_] / len(payments) == pytest.approx(MARKET_SHARE_WEIGHTS[bin_], abs=0.006), bin_


def test_tet_special_days_swell_then_empty_the_markets() -> None:
    start = datetime(2026, 2, 7, tzinfo=VN)  # Saturday, 10 days before mùng 1 Tết
    run = generate("default", 60_000, start=start, speed=2 * WEEK_S / (60_000 / RATE), seed=4)
    days = Counter(local(p["event_time"]).date() for p in _market(run))
    specials = special_days(DEFAULT["payments"])
    weekly = DEFAULT["payments"]["weekly"]

    def expected(day: int) -> float:
        moment = start.date() + timedelta(days=day)
        return weekly[moment.weekday()] * specials.get(moment, 1.0)

    base = sum(days[start.date() + timedelta(days=d)] for d in (0, 1)) / (expected(0) + expected(1))
    for day in range(2, 14):  # ≈ 500-5,000 payments a day
        moment = start.date() + timedelta(days=day)
        assert days[moment] / base == pytest.approx(expected(day), rel=0.12), moment
    holidays = scenario.holidays(DEFAULT["dossiers"])
    counter = [local(d["event_time"]) for d in run.of("dossier") if d["stage"] == "submitted"
               and d["channel"] == "offline"]
    assert counter, "offline dossiers on working days"
    assert not [t for t in counter if t.date() in holidays or t.weekday() >= 5]


# -- event time ---------------------------------------------------------------------------------------
def test_speed_holds_on_average_and_start_sets_the_origin(default_run: Run) -> None:
    times = [e.event_time for e in default_run.emitted]
    assert times == sorted(times)
    expected_span = FOUR_WEEKS_SPEED * len(times) / RATE
    # Dossier lifecycles take working days and VNeID activations hours: the speed is calibrated for the steady
    # state, where every start's later events fall inside the run. Four weeks from a cold start emit about 5 %
    # fewer events than that (lifecycles still running at the end), so event time runs that much further.
    assert times[-1] - times[0] == pytest.approx(expected_span * 1.045, rel=0.02)
    assert START.timestamp() <= times[0] < START.timestamp() + 60
    origin = datetime(2026, 3, 10, 14, 0, tzinfo=VN)
    run = generate("default", 2000, start=origin, speed=10.0, parse=False)
    first, last = run.emitted[0].event_time, run.emitted[-1].event_time
    assert origin.timestamp() <= first < origin.timestamp() + 1
    # Tuesday 14:00-14:03: a busy half hour, so event time runs a little slower than speed x wall time.
    assert 0.3 * 10 * 2 < last - first < 1.5 * 10 * 2


# -- dossiers -------------------------------------------------------------------------------------
def test_dossier_channel_vneid_and_payment_shares(default_run: Run) -> None:
    submitted = [d for d in default_run.of("dossier") if d["stage"] == "submitted"]
    online = [d for d in submitted if d["channel"] == "online"]
    cfg = DEFAULT["dossiers"]
    assert len(submitted) > 7000
    assert len(online) / len(submitted) == pytest.approx(cfg["online_share"], abs=0.02)  # s.e. 0.004
    assert sum(d["vneid_authenticated"] for d in online) / len(online) == pytest.approx(cfg["vneid_auth_share"],
                                                                                          abs=0.015)
    with_fee = [d for d in online if d["fee_vnd"] > 0]
    assert sum(d["paid_online"] for d in with_fee) / len(with_fee) == pytest.approx(cfg["paid_online_share"],
                                                                                   abs=0.03)
    assert not any(d["paid_online"] for d in submitted if d["fee_vnd"] == 0)  # nothing to pay
    offline = [d for d in submitted if d["channel"] == "offline"]
    assert not any(d["vneid_authenticated"] or d["paid_online"] for d in offline)


def test_procedures_fees_and_full_process_come_from_the_catalogue(default_run: Run) -> None:
    from schemas.catalogue import offered_full_process, procedures

    catalogue = {p.code: p for p in procedures()}
    offered = offered_full_process()
    submitted = [d for d in default_run.of("dossier") if d["stage"] == "submitted"]
    for event in submitted:
        procedure = catalogue[event["procedure_code"]]
        assert (event["sector"], event["fee_vnd"]) == (procedure.sector, procedure.fee_vnd)
        assert event["full_process"] == (procedure.code in offered[current(event["province_code"])])
    # Full-process submissions follow each province's offer: Cà Mau (95 % of eligible) far above Hải Phòng (50 %).
    def full_share(code: str) -> float:
        mine = [d for d in submitted if current(d["province_code"]) == code]
        return sum(d["full_process"] for d in mine) / len(mine)

    assert full_share("96") > full_share("31") + 0.15
    assert len({d["procedure_code"] for d in submitted}) > 500  # a Zipf draw over 1,800 procedures


def test_counter_dossiers_arrive_in_office_hours_only(default_run: Run) -> None:
    for event in default_run.of("dossier"):
        if event["stage"] == "submitted" and event["channel"] == "offline":
            moment = local(event["event_time"])
            hour = moment.hour + moment.minute / 60
            assert moment.weekday() < 5 and (7.5 <= hour < 11.5 or 13 <= hour < 17), event


def test_default_late_share_is_near_the_scenario(default_run: Run) -> None:
    share, returned = _late_share(_settled(default_run))
    assert returned > 3000  # s.e. of the share ≈ 0.004
    assert share == pytest.approx(DEFAULT["dossiers"]["late_rate"], abs=0.015)  # s.e. 0.003


def test_bac_lieu_scenario_makes_ca_mau_late(bac_lieu_run: Run, default_run: Run) -> None:
    dossiers = _settled(bac_lieu_run)
    ca_mau, returned = _late_share(dossiers, lambda code: code == "96")
    assert returned > 300  # s.e. of the share ≈ 0.025 around 0.24
    assert ca_mau > 0.20
    elsewhere, _ = _late_share(dossiers, lambda code: code != "96")
    assert elsewhere == pytest.approx(DEFAULT["dossiers"]["late_rate"], abs=0.015)
    national, _ = _late_share(dossiers)
    assert national < 0.09
    baseline, _ = _late_share(_settled(default_run), lambda code: code == "96")
    assert baseline < 0.15  # in the default world Cà Mau is ordinary


# -- identity -------------------------------------------------------------------------------------
def test_identity_levels_methods_and_ages(default_run: Run) -> None:
    activations = [a for a in default_run.of("id_activation") if a["step"] == "registered"]
    cfg = DEFAULT["identity"]
    assert len(activations) > 3000
    level2 = [a for a in activations if a["level"] == 2]
    assert len(level2) / len(activations) == pytest.approx(cfg["level2_share"], abs=0.03)  # s.e. 0.008
    assert all(a["method"] == "police_station" for a in level2)  # registered in person
    level1 = [a for a in activations if a["level"] == 1]
    self_service = sum(a["method"] == "self_service" for a in level1) / len(level1)
    assert self_service == pytest.approx(cfg["self_service_share_level1"], abs=0.025)
    bands = Counter(a["age_band"] for a in activations)
    for band, weight in (("18-24", 0.16), ("45-59", 0.24), ("60+", 0.12)):
        assert bands[band] / len(activations) == pytest.approx(weight, abs=0.025), band


def test_vneid_campaign_boosts_bac_ninh(vneid_run: Run, default_run: Run) -> None:
    def share_24(run: Run) -> float:
        activations = run.of("id_activation")
        return sum(current(a["province_code"]) == "24" for a in activations) / len(activations)

    assert share_24(default_run) == pytest.approx(3.619 / 112.095, abs=0.012)
    assert share_24(vneid_run) > 2.5 * share_24(default_run)
    in_24 = [a for a in vneid_run.of("id_activation")
             if current(a["province_code"]) == "24" and a["step"] == "registered"]
    campaign_hours = [a for a in in_24 if 7 <= local(a["event_time"]).hour < 21]
    assert len(campaign_hours) > 0.9 * len(in_24)
    level2 = sum(a["level"] == 2 for a in campaign_hours) / len(campaign_hours)
    assert level2 == pytest.approx(0.85, abs=0.04)  # the campaign's level2_share


# -- lifecycles -----------------------------------------------------------------------------------
def test_lifecycles_are_valid_paths_with_ordered_times(default_run: Run) -> None:
    from simulators.stats import lifecycle_ok

    dossiers: dict[str, list[dict]] = {}
    for event in default_run.of("dossier"):
        dossiers.setdefault(event["dossier_id"], []).append(event)
    outcomes: Counter = Counter()
    for events in dossiers.values():
        stages = [e["stage"] for e in events]
        times = [ts(e["event_time"]) for e in events]
        assert times == sorted(times), stages
        assert lifecycle_ok(stages), stages
        assert len({e["due_time"] for e in events}) == 1
        assert ts(events[0]["due_time"]) > times[0]
        assert len({(e["province_code"], e["channel"], e["procedure_code"], e["fee_vnd"]) for e in events}) == 1
        assert all((e["stage"] == "rated") == ("rating" in e) for e in events)
        assert not any(e["result_electronic"] for e in events if e["stage"] != "returned")
        outcomes.update(stage for stage in stages if stage != "submitted")
    settled = _settled(default_run)
    cfg = DEFAULT["dossiers"]
    # ≈ 3,500 settled dossiers: s.e. of a 4 % share ≈ 0.003, of a 30 % share ≈ 0.009.
    assert outcomes["rejected"] / outcomes["accepted"] == pytest.approx(cfg["rejection_rate"], abs=0.01)
    assert outcomes["withdrawn"] / outcomes["accepted"] == pytest.approx(cfg["withdrawal_rate"], abs=0.006)
    assert outcomes["supplement_requested"] / outcomes["accepted"] == pytest.approx(cfg["supplement_rate"], abs=0.015)
    assert outcomes["rated"] / outcomes["returned"] == pytest.approx(cfg["rated_share"], abs=0.03)
    finished = [v for v in settled.values() if v[-1]["stage"] in ("returned", "rated", "rejected", "withdrawn")]
    assert len(finished) == len(settled) > 3000  # every settled dossier has its outcome


def test_ratings_and_electronic_results(default_run: Run) -> None:
    dossiers = default_run.of("dossier")
    ratings = Counter(e["rating"] for e in dossiers if e["stage"] == "rated")
    assert sum(ratings.values()) > 1000
    assert (ratings[4] + ratings[5]) / sum(ratings.values()) == pytest.approx(0.85, abs=0.03)  # 0.30 + 0.55
    returned = [e for e in dossiers if e["stage"] == "returned"]
    full = [e for e in returned if e["channel"] == "online" and e["full_process"]]
    offline = [e for e in returned if e["channel"] == "offline"]
    assert sum(e["result_electronic"] for e in full) / len(full) == pytest.approx(0.95, abs=0.03)
    assert sum(e["result_electronic"] for e in offline) / len(offline) == pytest.approx(0.15, abs=0.04)


def test_deadlines_are_working_days_of_the_catalogue(default_run: Run) -> None:
    from schemas.catalogue import procedures

    deadline_days = {p.code: p.deadline_working_days for p in procedures()}
    holidays = scenario.holidays(DEFAULT["dossiers"])
    submitted = [d for d in default_run.of("dossier") if d["stage"] == "submitted"]
    for event in submitted[:3000]:
        due = local(event["due_time"])
        hour = due.hour + due.minute / 60 + due.second / 3600
        assert due.weekday() < 5 and due.date() not in holidays, event  # due on a working day, in office hours
        assert 7.5 <= hour <= 11.5 or 13 <= hour <= 17, event
        calendar_days = (ts(event["due_time"]) - ts(event["event_time"])) / 86400
        # N working days of 8 office hours: at least N - 1 calendar days, at most N x 7/5 + holidays + 2
        assert deadline_days[event["procedure_code"]] - 1 <= calendar_days
        assert calendar_days <= deadline_days[event["procedure_code"]] * 1.4 + 4


# -- payment categories ---------------------------------------------------------------------------
def test_bills_come_at_the_start_of_the_month(default_run: Run) -> None:
    utility = [local(p["event_time"]).date() for p in default_run.of("payment") if p["category"] == "utility"]
    days = Counter(utility)
    early = [n for day, n in days.items() if day.day <= 7]
    late = [n for day, n in days.items() if day.day >= 15]
    # month_days: 2.5-1.6 in the first week, 0.5 from the 13th (about 2,000 bills in four weeks)
    assert statistics.mean(early) > 2.5 * statistics.mean(late)


def test_tuition_comes_at_the_start_of_the_school_year() -> None:
    start = datetime(2026, 8, 17, tzinfo=VN)  # four weeks around 1 September
    run = generate("default", 60_000, start=start, speed=4 * WEEK_S / (60_000 / RATE), seed=6,
                   only=b'"category":"tuition"')
    days = Counter(local(p["event_time"]).date() for p in run.events)
    august = [n for day, n in days.items() if day.month == 8]
    september = [n for day, n in days.items() if day.month == 9 and day.day <= 7]
    assert sum(days.values()) > 500
    assert statistics.mean(september) > 4 * statistics.mean(august)  # months 3.0 vs 0.8, month start x 2


def test_every_category_is_paid_by_dynamic_qr_with_its_own_amounts(default_run: Run) -> None:
    payments = default_run.of("payment")
    shares = Counter(p["category"] for p in payments)
    categories = DEFAULT["payments"]["categories"]
    for name, cfg in categories.items():
        mine = [p for p in payments if p["category"] == name]
        assert all(p["channel"] == "vietqr_dynamic" for p in mine), name
        assert statistics.median(p["amount_vnd"] for p in mine) == pytest.approx(cfg["amount_median_vnd"], rel=0.15)
    market = 1 - sum(float(c["share"]) for c in categories.values())
    assert shares["market"] / len(payments) == pytest.approx(market, abs=0.02)


# -- VNeID lifecycle ------------------------------------------------------------------------------
def test_vneid_lifecycle_registered_in_person_then_activated_in_the_app(default_run: Run) -> None:
    people: dict[str, list[dict]] = {}
    for event in default_run.of("id_activation"):
        people.setdefault(event["citizen_ref"], []).append(event)
    end = max(ts(e["event_time"]) for e in default_run.of("id_activation"))
    activated = {1: [0, 0], 2: [0, 0]}  # level -> [registered a week before the end, of them activated]
    for events in people.values():
        steps = [e["step"] for e in events]
        assert steps == ["registered", "approved", "activated"][:len(steps)], steps  # the run may end mid-way
        assert [ts(e["event_time"]) for e in events] == sorted(ts(e["event_time"]) for e in events)
        assert len({(e["level"], e["province_code"], e["age_band"]) for e in events}) == 1
        assert all(e["method"] == "self_service" for e in events[1:])  # approval SMS, activation in the app
        level = events[0]["level"]
        if level == 2 and len(events) > 1:
            approved = local(events[1]["event_time"])
            hour = approved.hour + approved.minute / 60 + approved.second / 3600
            assert approved.weekday() < 5 and (7.5 <= hour <= 11.5 or 13 <= hour <= 17)  # reviewed in office hours
        if ts(events[0]["event_time"]) < end - 9 * 86400:
            activated[level][0] += 1
            activated[level][1] += steps[-1] == "activated"
    for level, (registered, done) in activated.items():
        assert done / registered == pytest.approx({1: 0.85, 2: 0.9}[level], abs=0.03), level


def test_unscaled_lifecycles_move_only_in_office_hours() -> None:
    custom = scenario.load("default")
    custom["dossiers"]["lifecycle_scale"] = 1.0
    run = generate(custom, 40_000, speed=3 * WEEK_S / 40, seed=5)
    holidays = scenario.holidays(custom["dossiers"])
    moved = 0
    submitted_at: dict[str, datetime] = {}
    accepted_at: dict[str, datetime] = {}
    for event in run.of("dossier"):
        moment = local(event["event_time"])
        if event["stage"] == "rated":
            continue  # the applicant's step, at any hour
        if event["stage"] == "submitted":
            submitted_at[event["dossier_id"]] = moment
            continue
        if event["stage"] == "accepted":
            accepted_at[event["dossier_id"]] = moment
        moved += 1
        hour = moment.hour + moment.minute / 60 + moment.second / 3600
        assert moment.weekday() < 5 and moment.date() not in holidays, event
        assert 7.5 <= hour <= 11.5 or 13 <= hour <= 17, event
    assert moved > 10_000
    # A Friday-evening (online) submission is accepted on Monday morning at the earliest.
    late_friday = [d for d, t in submitted_at.items() if t.weekday() == 4 and t.hour >= 17 and d in accepted_at]
    assert len(late_friday) > 20
    for dossier in late_friday:
        friday = submitted_at[dossier]
        monday = datetime(friday.year, friday.month, friday.day, 7, 30, tzinfo=VN) + timedelta(days=3)
        assert accepted_at[dossier] >= monday
