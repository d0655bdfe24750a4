"""Keyed messages to one partition as aiokafka record batches: one request per full batch instead of one
`send` (and its futures) per message. Used by the worker's publisher (streams/app.py) and by the sustained
bench's load (pulse/sustained_load.py); no Faust import, so a plain producer process can use it."""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def send_record_batches(producer: Any, topic: str, partition: int,
                              messages: Iterable[tuple[bytes | None, bytes]]) -> list[asyncio.Future]:
    """Queue `messages` on an started `AIOKafkaProducer` for `topic`/`partition`, a new batch each time one
    is full; returns the futures of the batches' delivery."""
    deliveries = []
    batch = producer.create_batch()
    for key, value in messages:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    return deliveries
