"""Deterministic generator of the three event streams.

Starts (a payment, a dossier submission, an activation) form an inhomogeneous Poisson process in event
time: the intensity is piecewise constant over half-hour buckets (local hour-of-day x day-of-week profile,
special days, office hours for counter submissions, activation campaigns), and each gap is drawn exactly
across bucket boundaries. Every profile is normalized to a weekly mean of 1, so `mix` is the long-run share
of starts per stream and, averaged over a week, event time advances `speed` seconds per `1/rate`-spaced
event. Every dossier schedules the rest of its lifecycle (walked on the office calendar) in a heap that is
merged in event-time order, so events come out with non-decreasing event time before faults.

The output depends only on the scenario, the seed and the flags. The hot path avoids per-event datetime,
UUID and random.choices machinery; equivalence with the straightforward forms is covered by tests.
"""
from __future__ import annotations

import heapq
import hmac
import math
import random
from binascii import crc_hqx
from bisect import bisect
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from typing import NamedTuple

import orjson

from schemas.vietqr import encode as encode_qr
from simulators import scenario as scenarios
from simulators.faults import CLOCK_SKEW_S, RESENT_KINDS, RESTAMP_S, SHIFTS, FaultPlan
from simulators.scenario import province_setting
from simulators.world import Merchant, World

VN_TZ = timezone(timedelta(hours=7))
VN_OFFSET_S = 7 * 3600
DAY_S = 86400
BUCKET_S = 1800  # intensity is constant within a local half hour (office hours start at 7:30)
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
STREAM_OF_TYPE = {"payment": "payments", "dossier": "dossiers", "id_activation": "identity"}
AGE_BANDS = (("14-17", 0.05), ("18-24", 0.16), ("25-34", 0.22), ("35-44", 0.21), ("45-59", 0.24), ("60+", 0.12))
STAGES = ("submitted", "accepted", "appraised", "approved", "signed", "returned")
# Share of a dossier's processing (office) time spent before each stage after submission.
STAGE_SHARES = (0.08, 0.42, 0.25, 0.1, 0.15)
STAGE_CUMULATIVE = tuple(accumulate(STAGE_SHARES))
LATE_OVERRUN = (1.05, 1.6)  # processing time / deadline for a late dossier
ON_TIME_USE = (0.25, 0.95)  # the same for an on-time one
LEGACY_SHARE = 0.1  # a few producers still send pre-2025 province codes; the pipeline maps them
# Dossier outcomes beyond the main path (assumptions, overridable in [dossiers]): supplement requested after
# acceptance, withdrawn by the applicant, rated after the result; ratings 1..5; electronic results by channel.
DEFAULT_SUPPLEMENT_RATE = 0.08
DEFAULT_WITHDRAWAL_RATE = 0.01
DEFAULT_RATED_SHARE = 0.3
RATING_CUM = tuple(accumulate((0.03, 0.04, 0.08, 0.30, 0.55)))  # ratings 1..5
ELECTRONIC_RESULT = {"full_process": 0.95, "online": 0.6, "offline": 0.15}
RATED_DELAY_H = (0.5, 48.0)  # the applicant rates in the app or at a kiosk, any hour
# VNeID lifecycle (kpis.md §1): level 2 registered in person at the police; approval by C06 is office work;
# activation in the VNeID app after the approval SMS, any hour. Level 1 is registered and approved in the app.
LEVEL2_APPROVAL_OFFICE_H = (2.0, 40.0)  # office hours of review (a quarter hour to five working days)
LEVEL1_APPROVAL_H = (0.05, 2.0)
ACTIVATION_DELAY_H = (0.05, 48.0)
ACTIVATED_SHARE = {1: 0.85, 2: 0.9}  # the rest never open the app (within the simulated span)
PAYMENT_CATEGORIES = ("utility", "tuition", "hospital", "public_fee", "welfare")
SPECIAL_YEARS = range(2020, 2036)  # day-of-month / month rhythms of payment categories are laid out for these
MIN_INTENSITY = 0.02  # floor of the overall start intensity (relative to its weekly mean)
DEFAULT_OFFICE_HOURS = ((7.5, 11.5), (13.0, 17.0))
DEFAULT_OFFICE_DAYS = (0, 1, 2, 3, 4)
# Sources of starts: (name, stream). Dossiers split by channel so counters receive only in office hours.
SOURCES = (("payments", "payments"), ("dossiers_online", "dossiers"), ("dossiers_offline", "dossiers"),
           ("identity", "identity"))
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


class Emitted(NamedTuple):
    """One encoded event: its stream, Kafka key, JSON bytes and event time (epoch seconds, after faults)."""

    stream: str
    key: bytes
    value: bytes
    event_time: float


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, VN_TZ).isoformat(timespec="milliseconds")


def _age_bounds(band: str) -> tuple[int, int]:
    if band.endswith("+"):
        low = int(band[:-1])
        return low, low + 25
    low, high = band.split("-")
    return int(low), int(high)


class _Stamps:
    """RFC 3339 local-time strings (+07:00, milliseconds) of integer epoch milliseconds, cached per second."""

    __slots__ = ("_second", "_prefix", "_days")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._days: dict[int, str] = {}

    def __call__(self, ms: int) -> str:
        second = ms // 1000
        if second != self._second:
            self._second, self._prefix = second, self._head(second)
        return "%s%03d+07:00" % (self._prefix, ms - second * 1000)

    def other(self, ms: int) -> str:
        """Like calling, without disturbing the one-second cache (for due times, shifted times)."""
        second = ms // 1000
        prefix = self._prefix if second == self._second else self._head(second)
        return "%s%03d+07:00" % (prefix, ms - second * 1000)

    def _head(self, second: int) -> str:
        day, of_day = divmod(second + VN_OFFSET_S, DAY_S)
        day_text = self._days.get(day)
        if day_text is None:
            if len(self._days) > 4096:
                self._days.clear()
            day_text = self._days[day] = (date(1970, 1, 1) + timedelta(days=day)).isoformat() + "T"
        hour, rest = divmod(of_day, 3600)
        return "%s%02d:%02d:%02d." % (day_text, hour, rest // 60, rest % 60)


RFC3339Stamps = _Stamps  # the same text for re-stamped copies of generated events (pulse.sustained_load)


class _DynamicQR:
    """Dynamic VietQR payloads of one merchant account: the fixed head and its CRC are computed once, so a
    payment only adds tag 54 (amount), 58, the CRC tag and the incremental CRC. Equal to vietqr.encode."""

    __slots__ = ("head", "crc")
    TAIL = "5802VN6304"

    def __init__(self, bank_bin: str, account: str) -> None:
        sample = encode_qr(bank_bin, account, amount=1)
        marker = "54011" + self.TAIL
        body = sample[:-4]
        if not body.endswith(marker):
            raise ValueError("unexpected VietQR layout")  # the codec changed: fall back (see _qr)
        self.head = body[: -len(marker)]
        self.crc = crc_hqx(self.head.encode("ascii"), 0xFFFF)

    def payload(self, amount: int) -> str:
        text = str(amount)
        tail = "54%02d%s5802VN6304" % (len(text), text)
        return "%s%s%04X" % (self.head, tail, crc_hqx(tail.encode("ascii"), self.crc))


class _Campaign:
    __slots__ = ("codes", "boost", "hours", "weekdays", "start", "end", "level2_share")

    def __init__(self, raw: dict, known: set[str]) -> None:
        self.codes = [str(code) for code in raw.get("provinces", [])]
        unknown = set(self.codes) - known
        if unknown or not self.codes:
            raise ValueError(f"[[identity.campaigns]] provinces must be current codes; got {self.codes}")
        self.boost = float(raw.get("boost", 1.0))
        low, high = raw.get("hours", (0, 24))
        self.hours = (float(low) * 3600, float(high) * 3600)
        self.weekdays = frozenset(int(d) for d in raw.get("weekdays", range(7)))
        self.start = scenarios.parse_moment(raw["start"]) if "start" in raw else -math.inf
        self.end = scenarios.parse_moment(raw["end"]) if "end" in raw else math.inf
        self.level2_share = float(raw["level2_share"]) if "level2_share" in raw else None

    def active(self, bucket_start: float, weekday: int, of_day: float) -> bool:
        return (self.start <= bucket_start < self.end and weekday in self.weekdays
                and self.hours[0] <= of_day < self.hours[1])


class _Source:
    """One kind of start: its share, its weekly profile (normalized), its special days and its provinces."""

    __slots__ = ("name", "stream", "mix", "profile", "special", "cum", "total")

    def __init__(self, name: str, stream: str, mix: float, profile: list[list[float]], special: dict[int, float],
                 weights: list[float]) -> None:
        mean = sum(map(sum, profile)) / (len(profile) * len(profile[0]))
        self.name, self.stream, self.special = name, stream, special
        self.mix = mix if mean > 0 else 0.0
        self.profile = [[v / mean for v in row] for row in profile] if mean > 0 else profile
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1]


class Generator:
    def __init__(self, scenario: dict, *, seed: int, start: datetime, rate: float, speed: float,
                 pii_key: bytes, faults: FaultPlan) -> None:
        scenarios.validate(scenario)
        if not rate or rate <= 0 or speed <= 0:
            raise ValueError(f"rate and speed must be > 0, got rate={rate} speed={speed}")
        self.rng = random.Random(seed)
        self.scenario = scenario
        self.world = World(scenario, random.Random(seed ^ 0x5EED), encode_qr)
        self.clock = start.timestamp()
        self.pii_key = pii_key
        self.faults = faults
        self.pending: list[tuple[float, int, list, int]] = []  # (time, seq, dossier, step): next stages
        self._seq = 0
        self._upcoming: tuple[float, _Source] | None = None
        self._stamp = _Stamps()
        self._setup_settings()
        self._setup_sources()
        mix = scenario["mix"]
        rejection, withdrawal = self._rejection_rate, self._withdrawal_rate
        main_path = 1 - rejection - withdrawal
        # submitted + 5 stages (+ supplement, + rating); rejected after stage 1 or 2; withdrawn after acceptance
        dossier_events = (main_path * (len(STAGES) + self._supplement_rate + self._rated_share)
                          + 3.5 * rejection + 3 * withdrawal)
        identity_events = 2 + sum(ACTIVATED_SHARE.values()) / 2  # registered, approved, mostly activated
        total_mix = sum(float(mix[s]) for s in ("payments", "dossiers", "identity"))
        per_start = (float(mix["payments"]) + float(mix["identity"]) * identity_events
                     + float(mix["dossiers"]) * dossier_events)
        # Event-time seconds per start at the weekly mean intensity, so that events/s of event time average
        # rate/speed.
        self.mean_gap = speed * per_start / total_mix / rate
        self._bucket_end = -math.inf
        self._enter_bucket(self.clock)

    # -- setup ------------------------------------------------------------------------------------
    def _setup_settings(self) -> None:
        sc, world, codes = self.scenario, self.world, self.world.codes
        pay, dos, ide = sc["payments"], sc["dossiers"], sc["identity"]

        def per_province(key: str, default: float) -> dict[str, float]:
            return {code: province_setting(sc, code, key, default) for code in codes}

        self._random, self._gauss, self._getrandbits = self.rng.random, self.rng.gauss, self.rng.getrandbits
        self._codes = codes
        self._bank_bins, self._bank_cum = world.bank_bins, world.bank_cum
        self._bank_total = world.bank_cum[-1]
        self._median = float(pay["amount_median_vnd"])
        self._sigma = float(pay["amount_sigma"])
        self._failure = per_province("failure_rate", float(pay["failure_rate"]))
        self._online = per_province("online_share", float(dos["online_share"]))
        self._late = per_province("late_rate", float(dos["late_rate"]))
        self._paid_online = per_province("paid_online_share", float(dos["paid_online_share"]))
        self._vneid = per_province("vneid_auth_share", float(dos["vneid_auth_share"]))
        self._level2 = per_province("level2_share", float(ide["level2_share"]))
        self._self_service = float(ide["self_service_share_level1"])
        self._rejection_rate = float(dos["rejection_rate"])
        self._supplement_rate = float(dos.get("supplement_rate", DEFAULT_SUPPLEMENT_RATE))
        self._withdrawal_rate = float(dos.get("withdrawal_rate", DEFAULT_WITHDRAWAL_RATE))
        self._rated_share = float(dos.get("rated_share", DEFAULT_RATED_SHARE))
        self._scale = float(dos["lifecycle_scale"])
        self._categories = dict(pay.get("categories", {}))
        bands = ide.get("age_bands") or dict(AGE_BANDS)
        self._bands = [(band, *_age_bounds(band)) for band in bands]
        self._band_cum = list(accumulate(float(w) for w in bands.values()))
        self._legacy = {code: tuple(world.legacy_codes[code]) for code in codes}
        self._birth = {code: tuple(world.birth_codes[code]) for code in codes}
        self._merchants = {code: tuple(world.merchants[code]) for code in codes}
        self._qr_templates: dict[str, _DynamicQR | None] = {}
        self._hmac_key = self.pii_key
        # Office calendar for dossier lifecycles: seconds-of-day intervals, office weekdays, holidays.
        self._office = tuple((float(a) * 3600, float(b) * 3600)
                             for a, b in dos.get("office_hours", DEFAULT_OFFICE_HOURS))
        self._office_days = frozenset(int(d) for d in dos.get("office_days", DEFAULT_OFFICE_DAYS))
        self._holidays = {_epoch_day(day) for day in scenarios.holidays(dos)}
        if not self._office or not self._office_days:
            raise ValueError("[dossiers] office_hours and office_days must not be empty")
        self._campaigns = [_Campaign(raw, set(codes)) for raw in ide.get("campaigns", [])]

    def _profile(self, stream: str) -> list[list[float]]:
        section = self.scenario[stream]
        return [[float(h) * float(w) for h in section["hourly"] for _ in (0, 1)] for w in section["weekly"]]

    def _setup_sources(self) -> None:
        sc, world = self.scenario, self.world
        mix = {s: float(sc["mix"][s]) for s in ("payments", "dossiers", "identity")}
        population = dict(zip(world.codes, world.dossier_weights))
        online_w = [population[c] * self._online[c] for c in world.codes]
        offline_w = [population[c] * (1 - self._online[c]) for c in world.codes]
        online_share = sum(online_w) / sum(population.values())
        # Counters: the dossier profile, only inside office hours on office days (holidays: see buckets).
        office = [[self._office_fraction(slot * BUCKET_S) if day in self._office_days else 0.0
                   for slot in range(DAY_S // BUCKET_S)] for day in range(7)]
        dossier = self._profile("dossiers")
        counter = [[v * f for v, f in zip(row, frow)] for row, frow in zip(dossier, office)]

        def special(stream: str) -> dict[int, float]:
            return {_epoch_day(day): m for day, m in scenarios.special_days(sc[stream]).items()}

        def weights(values: list[float]) -> list[float]:
            return values if sum(values) > 0 else [1.0] * len(values)

        other = sum(float(c["share"]) for c in self._categories.values())
        self.sources = [
            _Source("payments", "payments", mix["payments"] * (1 - other), self._profile("payments"),
                    special("payments"), world.payment_weights),
            _Source("dossiers_online", "dossiers", mix["dossiers"] * online_share, dossier, special("dossiers"),
                    weights(online_w)),
            _Source("dossiers_offline", "dossiers", mix["dossiers"] * (1 - online_share), counter,
                    special("dossiers"), weights(offline_w)),
            _Source("identity", "identity", mix["identity"], self._profile("identity"), special("identity"),
                    world.identity_weights),
            *[_Source(name, "payments", mix["payments"] * float(cfg["share"]), self._category_profile(cfg),
                      self._category_days(cfg), world.dossier_weights)
              for name, cfg in self._categories.items()],
        ]
        self._mix_total = sum(mix.values())
        self._makers = {"payments": self._payment, "dossiers_online": self._dossier_online,
                        "dossiers_offline": self._dossier_offline, "identity": self._activation,
                        **{name: self._category_payment for name in self._categories}}

    @staticmethod
    def _category_profile(cfg: dict) -> list[list[float]]:
        return [[float(h) * float(w) for h in cfg["hourly"] for _ in (0, 1)] for w in cfg["weekly"]]

    @staticmethod
    def _category_days(cfg: dict) -> dict[int, float]:
        """Day multipliers from `month_days` (31 values: bills at the start of the month) and `months` (12:
        tuition at the start of a term), normalized to a mean of 1 over each year so `mix` keeps its meaning."""
        month_days = [float(v) for v in cfg.get("month_days", [1.0] * 31)]
        months = [float(v) for v in cfg.get("months", [1.0] * 12)]
        days: dict[int, float] = {}
        for year in SPECIAL_YEARS:
            first = date(year, 1, 1)
            span = [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]
            raw = [month_days[day.day - 1] * months[day.month - 1] for day in span]
            mean = sum(raw) / len(raw)
            days.update({_epoch_day(day): value / mean for day, value in zip(span, raw)})
        return days

    def _office_fraction(self, start: float) -> float:
        end = start + BUCKET_S
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in self._office) / BUCKET_S

    # -- event time -------------------------------------------------------------------------------
    def _enter_bucket(self, moment: float) -> None:
        """Intensities of the local half hour containing `moment`."""
        start = moment // BUCKET_S * BUCKET_S
        day, of_day = divmod(start + VN_OFFSET_S, DAY_S)
        day = int(day)
        weekday, slot = (day + EPOCH_WEEKDAY) % 7, int(of_day // BUCKET_S)
        self._bucket_end = start + BUCKET_S
        self._bucket_year = (date(1970, 1, 1) + timedelta(days=day)).year
        holiday = day in self._holidays
        rates = []
        self._identity_cum, self._identity_total = self.sources[3].cum, self.sources[3].total
        self._level2_now = self._level2
        for source in self.sources:
            rate = source.mix * source.profile[weekday][slot] * source.special.get(day, 1.0)
            if source.name == "dossiers_offline" and holiday:
                rate = 0.0
            elif source.name == "identity" and self._campaigns:
                rate *= self._campaign_bucket(start, weekday, of_day)
            rates.append(rate)
        self._source_cum = list(accumulate(rates))
        self._source_total = self._source_cum[-1]
        self._rate = max(self._source_total / self._mix_total, MIN_INTENSITY) / self.mean_gap  # starts per second

    def _campaign_bucket(self, start: float, weekday: int, of_day: float) -> float:
        """Apply the campaigns active in this bucket to identity's provinces; the stream's rate factor."""
        active = [c for c in self._campaigns if c.active(start, weekday, of_day)]
        if not active:
            return 1.0
        factor = dict.fromkeys(self.world.codes, 1.0)
        level2 = dict(self._level2)
        for campaign in active:
            for code in campaign.codes:
                factor[code] *= campaign.boost
                if campaign.level2_share is not None:
                    level2[code] = campaign.level2_share
        base = self.world.identity_weights
        boosted = [w * factor[c] for c, w in zip(self.world.codes, base)]
        self._identity_cum = list(accumulate(boosted))
        self._identity_total = self._identity_cum[-1]
        self._level2_now = level2
        return self._identity_total / self.sources[3].total if self.sources[3].total else 1.0

    def _next_start(self) -> tuple[float, _Source]:
        need = self.rng.expovariate(1.0)  # in units of expected starts
        while True:
            room = (self._bucket_end - self.clock) * self._rate
            if need < room:
                self.clock += need / self._rate
                break
            need -= room
            self.clock = self._bucket_end
            self._enter_bucket(self.clock)
        if self._source_total > 0:
            source = self.sources[bisect(self._source_cum, self.rng.random() * self._source_total)]
        else:
            source = self.sources[0]
        return self.clock, source

    def _uuid(self) -> str:
        h = "%032x" % (self._getrandbits(128) & _UUID_CLEAR | _UUID_SET)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _province(self, source: _Source) -> str:
        return self.world.codes[bisect(source.cum, self.rng.random() * source.total)]

    def _sent_code(self, code: str) -> str:
        """The code a producer sends: sometimes a pre-2025 code of the unit."""
        legacy = self._legacy[code]
        if legacy and self._random() < LEGACY_SHARE:
            return legacy[int(self._random() * len(legacy))]
        return code

    # -- the three streams ------------------------------------------------------------------------
    def _qr(self, merchant: Merchant, amount: int) -> str:
        template = self._qr_templates.get(merchant.merchant_id, False)
        if template is False:
            try:
                template = _DynamicQR(merchant.bank_bin, merchant.account)
            except ValueError:
                template = None
            self._qr_templates[merchant.merchant_id] = template
        if template is None:
            return encode_qr(merchant.bank_bin, merchant.account, amount=amount)
        return template.payload(amount)

    def _payment(self, at: float, source: _Source) -> tuple[str, dict]:
        random_ = self._random
        code = self._codes[bisect(source.cum, random_() * source.total)]
        merchants = self._merchants[code]
        merchant = merchants[int(random_() * len(merchants))]
        amount = int(self._median * math.exp(self._sigma * self._gauss(0.0, 1.0)) / 1000 + 0.5) * 1000 or 1000
        static = merchant.static_qr
        event_id = self._uuid()
        return event_id, {
            "type": "payment", "event_id": event_id, "event_time": self._stamp(int(at * 1000)),
            "province_code": self._sent_code(code),
            "market_id": merchant.market_id, "merchant_id": merchant.merchant_id,
            "payer_bank_bin": self._bank_bins[bisect(self._bank_cum, random_() * self._bank_total)],
            "payee_bank_bin": merchant.bank_bin, "amount_vnd": amount,
            "channel": "vietqr_static" if static else "vietqr_dynamic",
            "status": "failed" if random_() < self._failure[code] else "success",
            "qr_payload": static or self._qr(merchant, amount), "category": "market",
        }

    def _category_payment(self, at: float, source: _Source) -> tuple[str, dict]:
        """A bill, fee or payout by dynamic VietQR (the amount is in the code): electricity and water, tuition,
        hospital fees, public-service fees, welfare payouts."""
        random_ = self._random
        cfg = self._categories[source.name]
        code = self._codes[bisect(source.cum, random_() * source.total)]
        payees = self.world.payees[source.name][code]
        payee = payees[int(random_() * len(payees))]
        median, sigma = float(cfg["amount_median_vnd"]), float(cfg.get("amount_sigma", 0.6))
        amount = int(median * math.exp(sigma * self._gauss(0.0, 1.0)) / 1000 + 0.5) * 1000 or 1000
        event_id = self._uuid()
        return event_id, {
            "type": "payment", "event_id": event_id, "event_time": self._stamp(int(at * 1000)),
            "province_code": self._sent_code(code), "market_id": payee.market_id, "merchant_id": payee.merchant_id,
            "payer_bank_bin": self._bank_bins[bisect(self._bank_cum, random_() * self._bank_total)],
            "payee_bank_bin": payee.bank_bin, "amount_vnd": amount, "channel": "vietqr_dynamic",
            "status": "failed" if random_() < self._failure[code] else "success",
            "qr_payload": self._qr(payee, amount), "category": source.name,
        }

    def _dossier_online(self, at: float, source: _Source) -> tuple[str, dict]:
        return self._dossier(at, source, True)

    def _dossier_offline(self, at: float, source: _Source) -> tuple[str, dict]:
        return self._dossier(at, source, False)

    def _dossier(self, at: float, source: _Source, online: bool) -> tuple[str, dict]:
        rng, world = self.rng, self.world
        random_ = rng.random
        code = world.codes[bisect(source.cum, random_() * source.total)]
        procedure = world.procedures[bisect(world.procedure_cum, random_() * world.procedure_cum[-1])]
        full_process = procedure.code in world.full_process[code]
        deadline = procedure.deadline_hours * 3600.0
        late = random_() < self._late[code]
        use = rng.uniform(*LATE_OVERRUN) if late else rng.uniform(*ON_TIME_USE)
        stages, shares = self._outcome()
        work = [deadline * use * share for share in shares]
        due_index = bisect(work, deadline)  # due lies between stage work targets (or after the last)
        times = self._office_walk(at, work[:due_index] + [deadline] + work[due_index:])
        due = times.pop(due_index)
        if stages[-1] == "rated":  # the applicant rates in the app or at a kiosk, at any hour
            times[-1] = times[-2] + rng.uniform(*RATED_DELAY_H) * 3600 * self._scale
        dossier_id = "HS-%s-%012X" % (code, rng.getrandbits(48))
        channel = ("full_process" if full_process else "online") if online else "offline"
        # [dossier_id, procedure, full_process, channel, province as sent, due, paid online, VNeID,
        #  later stage times, later stages, (stream, event builder), sector, fee, electronic result, rating]:
        #  one heap entry per dossier, for its next stage.
        dossier = [
            dossier_id, procedure.code, full_process, "online" if online else "offline",
            self._sent_code(code), self._stamp.other(int(due * 1000)),
            online and procedure.fee_vnd > 0 and random_() < self._paid_online[code],
            online and random_() < self._vneid[code],
            times, stages, ("dossiers", self._dossier_event), procedure.sector, procedure.fee_vnd,
            random_() < ELECTRONIC_RESULT[channel],
            bisect(RATING_CUM, random_() * RATING_CUM[-1]) + 1 if "rated" in stages else None,
        ]
        self._seq += 1
        heapq.heappush(self.pending, (times[0], self._seq, dossier, 0))
        return dossier_id, self._dossier_event(dossier, at, "submitted")[1]

    def _outcome(self) -> tuple[list[str], list[float]]:
        """The dossier's path after submission, with the share of its handling time done before each step:
        rejected, withdrawn, or the main path with a possible supplement request and a rating after the
        result (the rating's time is set apart, it is no office work)."""
        random_ = self._random
        stages, shares = list(STAGES[1:]), list(STAGE_CUMULATIVE)
        draw = random_()
        if draw < self._rejection_rate:
            rejected_at = 1 if random_() < 0.5 else 2  # rejected instead of approval or of appraisal's result
            return stages[:rejected_at] + ["rejected"], shares[:rejected_at + 1]
        if draw < self._rejection_rate + self._withdrawal_rate:
            return ["accepted", "withdrawn"], shares[:2]
        if random_() < self._supplement_rate:  # asked between acceptance and appraisal
            stages.insert(1, "supplement_requested")
            shares.insert(1, (shares[0] + shares[1]) / 2)
        if random_() < self._rated_share:
            stages.append("rated")
            shares.append(shares[-1])
        return stages, shares

    def _dossier_event(self, dossier: list, at: float, stage: str) -> tuple[str, dict]:
        event = {
            "type": "dossier", "event_id": self._uuid(), "event_time": self._stamp(int(at * 1000)),
            "province_code": dossier[4], "dossier_id": dossier[0], "procedure_code": dossier[1],
            "full_process": dossier[2], "channel": dossier[3], "stage": stage, "due_time": dossier[5],
            "paid_online": dossier[6], "vneid_authenticated": dossier[7], "sector": dossier[11],
            "fee_vnd": dossier[12], "result_electronic": stage == "returned" and dossier[13],
        }
        if stage == "rated":
            event["rating"] = dossier[14]
        return dossier[0], event

    def _office_walk(self, at: float, work: list[float]) -> list[float]:
        """Event times at which the given (non-decreasing) office seconds of work are done, counted from
        `at` on the office calendar (office hours of office days, holidays off), elapsed time then scaled
        by lifecycle_scale: a step that would end at night or on a weekend ends in the next office hours."""
        local = at + VN_OFFSET_S
        day = int(local // DAY_S)
        of_day = local - day * DAY_S
        office, office_days, holidays = self._office, self._office_days, self._holidays
        done = 0.0
        times: list[float] = []
        i, count = 0, len(work)
        while i < count:
            if (day + EPOCH_WEEKDAY) % 7 in office_days and day not in holidays:
                for begin, end in office:
                    low = of_day if of_day > begin else begin
                    if low >= end:
                        continue
                    available = end - low
                    while i < count and work[i] - done <= available:
                        times.append(day * DAY_S + low + (work[i] - done) - VN_OFFSET_S)
                        i += 1
                    done += available
                    if i == count:
                        break
            day += 1
            of_day = 0.0
        scale = self._scale
        return [at + (moment - at) * scale for moment in times]

    def _activation(self, at: float, source: _Source) -> tuple[str, dict]:
        """A VNeID registration; its approval and (mostly) its activation in the app follow from the heap."""
        rng = self.rng
        random_ = rng.random
        code = self.world.codes[bisect(self._identity_cum, random_() * self._identity_total)]
        level2 = random_() < self._level2_now[code]
        in_app = not level2 and random_() < self._self_service  # level 1 in the app, or helped at the police
        band, low, high = self._bands[bisect(self._band_cum, random_() * self._band_cum[-1])]
        born = self._bucket_year - low - int(random_() * (high - low + 1))
        female = random_() < 0.5
        # CCCD number: birth-province code (3 digits), century/sex digit, year of birth, 6 random digits.
        births = self._birth[code]
        birth_code = births[int(random_() * len(births))]
        century = (0 if born < 2000 else 2) + female
        citizen = "0%s%d%02d%06d" % (birth_code, century, born % 100, int(random_() * 1_000_000))
        level = 2 if level2 else 1
        if level2:  # reviewed by the police (C06) in office hours
            approved = self._office_walk(at, [rng.uniform(*LEVEL2_APPROVAL_OFFICE_H) * 3600])[0]
        else:
            approved = at + rng.uniform(*LEVEL1_APPROVAL_H) * 3600 * self._scale
        times, steps = [approved], ["approved"]
        if random_() < ACTIVATED_SHARE[level]:
            times.append(approved + rng.uniform(*ACTIVATION_DELAY_H) * 3600 * self._scale)
            steps.append("activated")
        # [citizen_ref, province as sent, level, registration method, age band, -, -, -, step times, steps,
        #  (stream, event builder)]: the heap entry layout of dossiers, positions 8-10.
        person = [hmac.digest(self._hmac_key, citizen.encode(), "sha256").hex(), self._sent_code(code), level,
                  "self_service" if in_app else "police_station", band, None, None, None, times, steps,
                  ("identity", self._activation_event)]
        self._seq += 1
        heapq.heappush(self.pending, (times[0], self._seq, person, 0))
        return self._activation_event(person, at, "registered")

    def _activation_event(self, person: list, at: float, step: str) -> tuple[str, dict]:
        event_id = self._uuid()
        return event_id, {
            "type": "id_activation", "event_id": event_id, "event_time": self._stamp(int(at * 1000)),
            "province_code": person[1], "citizen_ref": person[0], "level": person[2],
            # registration where it happened; approval and activation are the citizen's steps in the app
            "method": person[3] if step == "registered" else "self_service",
            "age_band": person[4], "step": step,
        }

    # -- output -----------------------------------------------------------------------------------
    def _next_event(self) -> tuple[str, str, dict, float]:
        """(stream, key, event, event time) of the next event in event-time order."""
        if self._upcoming is None:
            self._upcoming = self._next_start()
        at, source = self._upcoming
        pending = self.pending
        if pending and pending[0][0] <= at:
            moment, _, item, step = pending[0]
            stages = item[9]
            if step + 1 < len(stages):
                self._seq += 1
                heapq.heapreplace(pending, (item[8][step + 1], self._seq, item, step + 1))
            else:
                heapq.heappop(pending)
            stream, build = item[10]
            key, event = build(item, moment, stages[step])
            return stream, key, event, moment
        self._upcoming = None
        key, event = self._makers[source.name](at, source)
        return source.stream, key, event, at

    def events(self, limit: int | None) -> Iterator[Emitted]:
        """Encoded events in emission order, faults applied; `limit` counts generated events."""
        duplicates: list[tuple[int, int, Emitted]] = []  # (due index, order, event) heap
        index = 0
        faulty = bool(self.faults.fractions)
        pick = self.faults.pick
        dumps = orjson.dumps
        next_event = self._next_event
        while limit is None or index < limit:
            stream, key, event, moment = next_event()
            fault = pick(index, stream) if faulty else None
            if fault is None:
                emitted = Emitted(stream, key.encode(), dumps(event), int(moment * 1000) / 1000)
            else:
                emitted = self._apply_fault(fault, event, stream, key, moment)
                if fault in RESENT_KINDS:
                    again = emitted if fault == "duplicate" else self._restamped(event, stream, key, moment)
                    heapq.heappush(duplicates, (index + self.rng.randint(1, 50), index, again))
            yield emitted
            index += 1
            while duplicates and duplicates[0][0] <= index:
                yield heapq.heappop(duplicates)[2]
        while duplicates:
            yield heapq.heappop(duplicates)[2]

    def _apply_fault(self, kind: str, event: dict, stream: str, key: str, moment: float) -> Emitted:
        ms = int(moment * 1000)
        if kind in SHIFTS:
            low, high = SHIFTS[kind]
            ms -= int(self.rng.uniform(low, high) * 1000)
            event["event_time"] = self._stamp.other(ms)
        elif kind == "clock_skew":
            ms += int(self.rng.uniform(*CLOCK_SKEW_S) * 1000)
            event["event_time"] = self._stamp.other(ms)
        elif kind == "unknown_province":
            event["province_code"] = "99"
        elif kind == "bad_qr":
            payload = event["qr_payload"]
            event["qr_payload"] = payload[:-1] + ("0" if payload[-1] != "0" else "1")
        value = orjson.dumps(event)
        if kind == "malformed":
            # Truncated, as a crashed producer leaves it; the `"type":"..."` field survives for routing.
            keep = value.index(b'"', 9) + 2
            value = value[: self.rng.randint(max(20, keep), len(value) - 2)]
        return Emitted(stream, key.encode(), value, ms / 1000)


    def _restamped(self, event: dict, stream: str, key: str, moment: float) -> Emitted:
        """The same event_id with its time moved into a later minute: a conflicting copy."""
        ms = int(moment * 1000) + int(self.rng.uniform(*RESTAMP_S) * 1000)
        return Emitted(stream, key.encode(), orjson.dumps(event | {"event_time": self._stamp.other(ms)}), ms / 1000)


def _epoch_day(day: date) -> int:
    return (day - date(1970, 1, 1)).days
