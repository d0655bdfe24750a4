"""Hand-made valid events for unit tests."""
from __future__ import annotations

import hashlib
import json
import uuid


def activation(clock: str, province: str, level: int = 1, day: str = "2026-01-05") -> bytes:
    """An id_activation event at `clock` (HH:MM:SS, UTC) on `day`."""
    return json.dumps({
        "type": "id_activation", "event_id": str(uuid.uuid4()), "event_time": f"{day}T{clock}+00:00",
        "province_code": province, "citizen_ref": hashlib.sha256(clock.encode()).hexdigest(), "level": level,
        "method": "police_station" if level == 2 else "self_service", "age_band": "25-34",
    }).encode()
