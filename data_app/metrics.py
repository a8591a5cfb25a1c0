"""Prometheus figures of the data path, updated where the events happen; ``/metrics`` serves them.

Each process reports its own: ``serve`` the WebSocket clients, live lag and the
chunk store writes of the gRPC and REST writers it runs; ``ingest_streams`` its
ingest figures.
"""

from prometheus_client import Counter, Gauge, Histogram

# Live (data_app.live)
WEBSOCKET_CLIENTS = Gauge("rta_websocket_clients", "WebSocket live-stream clients connected")
LIVE_LAG = Histogram(
    "rta_live_buffer_lag_seconds",
    "Age of a live-buffer entry when the followers hand it to WebSocket clients",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# Chunk store (data_app.store.writer)
STORED_BYTES = Counter("rta_store_written_bytes_total", "Chunk bytes written to the store")
STORED_CHUNKS = Counter("rta_store_written_chunks_total", "Chunks written to the store (new or merged)")
FLUSH_SECONDS = Histogram(
    "rta_store_flush_duration_seconds",
    "Time to store one flush: encode, write, fsync and index",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

# Ingest (data_app.ingest.runner)
INGEST_LAG = Histogram(
    "rta_ingest_lag_seconds",
    "Kafka message timestamp to the flush that made it durable",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
INGEST_COMMITTED_OFFSET = Gauge(
    "rta_ingest_committed_offset", "Next offset the ingest consumer committed", ["topic", "partition"]
)
INGEST_CONSUMER_LAG = Gauge(
    "rta_ingest_consumer_lag_messages",
    "Messages on the partition not yet committed by the ingest consumer (high watermark - committed)",
    ["topic", "partition"],
)
