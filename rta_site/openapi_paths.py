"""OpenAPI paths for what is served outside DRF views (drf-spectacular APPEND_PATHS).

The chunked data endpoints stream bytes from plain Django views, the live
stream is a WebSocket and monitoring answers plain text; they are described
here so ``/rta/v2/schema`` covers everything the server serves.
"""

_ERROR = {
    "description": "a JSON message naming the problem",
    "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}},
}
_CHUNKED = {
    "description": "chunks, each a ChunkTransferHeader (length-delimited, fields as deltas) followed by an LZ4 "
    "block-compressed list message, streamed as they are read; requests round outwards to whole stable chunks",
    "content": {"application/vnd.mat.protobuf+chunked": {"schema": {"type": "string", "format": "binary"}}},
}
_IDENTITY = {
    "name": "identity",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "session identity (its data identity, through its data bindings)",
}
_TIME = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "format": "int64"},
        "description": f"{label} of the time range in ns (inclusive); open when left out",
    }
    for name, label in (("start", "start"), ("end", "end"))
]


def _data(kind, summary, channels):
    parameters = (
        [_IDENTITY]
        + (
            [
                {
                    "name": "channels",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "channel expression: hex ids and ranges separated by commas, open ranges allowed "
                    "(e.g. `0-1f,40,100-`)",
                }
            ]
            if channels
            else []
        )
        + _TIME
    )
    return {
        "get": {
            "operationId": f"session_data_{kind}",
            "summary": summary,
            "tags": ["data"],
            "parameters": parameters,
            "responses": {"200": _CHUNKED, "400": _ERROR, "404": _ERROR, "406": _ERROR},
        }
    }


APPEND_PATHS = {
    "/rta/v2/sessions/{identity}/data/timestamped/{channels}": _data(
        "timestamped", "timestamped samples of the channels", True
    ),
    "/rta/v2/sessions/{identity}/data/periodic/{channels}": _data("periodic", "periodic samples of the channels", True),
    "/rta/v2/sessions/{identity}/data/row/{channels}": _data("row", "rows holding any of the channels", True),
    "/rta/v2/sessions/{identity}/data/events": _data("events", "the session's events", False),
    "/rta/v2/sessions/{identity}/stream": {
        "get": {
            "operationId": "session_stream",
            "summary": "live stream of an open session (WebSocket, sub-protocol mat.ocs.rta.stream-lz4)",
            "description": "Upgrade to a WebSocket with the `mat.ocs.rta.stream-lz4` sub-protocol. Server messages are "
            "LZ4-framed StreamDataBurst messages: first the session JSON, then time-range and JSON updates, and data "
            "after a StreamRequest subscription (back-fill from the live buffer, then the leading edge).",
            "tags": ["live"],
            "parameters": [_IDENTITY],
            "responses": {
                "101": {"description": "switching to the WebSocket protocol"},
                "400": {"description": "not a WebSocket upgrade"},
                "406": {"description": "the mat.ocs.rta.stream-lz4 sub-protocol was not offered"},
            },
        }
    },
    "/": {
        "get": {
            "operationId": "product",
            "summary": "product, version and enabled services",
            "tags": ["monitoring"],
            "responses": {
                "200": {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        }
    },
    "/health": {
        "get": {
            "operationId": "health",
            "summary": "readiness of the database and every configured store",
            "tags": ["monitoring"],
            "responses": {
                "200": {"description": "Healthy", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "503": {
                    "description": "Unhealthy, with the reason",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "tags": ["monitoring"],
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}
