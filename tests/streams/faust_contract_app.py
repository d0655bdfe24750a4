"""A minimal BulkApp for tests/streams/test_faust_contract.py, run in its own process (Faust's Worker owns the
event loop and the signals): it reads one topic through `@app.batch_handler`, writes each batch it receives as
one JSON line, and acks only the records with an offset below a limit.

    python -m tests.streams.faust_contract_app BOOTSTRAP TOPIC GROUP OUT_FILE ACK_BELOW DATADIR
"""
from __future__ import annotations

import json
import sys

import faust
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from streams.batching import BulkApp


def main() -> None:
    bootstrap, topic_name, group, out, ack_below, datadir = sys.argv[1:]
    app = BulkApp(group, broker=f"kafka://{bootstrap}", value_serializer="raw", key_serializer="raw",
                  store="memory://", datadir=datadir, web_enabled=False, topic_allow_declare=False,
                  topic_disable_leader=True, consumer_auto_offset_reset="earliest", broker_commit_interval=0.5)
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")

    async def on_records(tp: TP, records: list[ConsumerRecord]) -> None:
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps([tp.partition, [record.offset for record in records]]) + "\n")
        app.consumer.ack_records(tp, [record for record in records if record.offset < int(ack_below)])

    app.batch_handler(topic)(on_records)
    faust.Worker(app, loglevel="warning", quiet=True, override_logging=False).execute_from_commandline()


if __name__ == "__main__":
    main()
