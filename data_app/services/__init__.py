"""The Data Service: what the transport adapters (api/, grpc/, ingest/, live/) call."""
