"""ATLAS Advanced Streams ingest (spec §11): Kafka topics -> RTA sessions, configs, data and live streams.

- ``messages``: keys and values (JSON and the protobuf codec) decoded and checked.
- ``formats``: the channel layout of a data format.
- ``configs``: the RTA config generated for a (data format, ATLAS configuration) pair.
- ``dedupe``: what is already stored, so replays add nothing.
- ``ingestor``: the stream state machine and the mapping (transport-agnostic).
- ``runner``: the Kafka consumer loop and recorded-file replay.

``manage.py ingest_streams`` is the command; dependencies are served by
``config_app`` (``/api/dependencies``, ``manage.py load_dependencies``).
"""
