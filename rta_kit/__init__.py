"""The RTA data adapter kit: everything a data service needs to speak the chunked wire format.

Framework-free (no Django): the server's chunk store and gateway use it, and
so can a standalone data adapter. ``wire`` is the chunked wire format (spec
§8), ``items``/``timestamped``/``samples``/``varints`` encode data items and
chunk payloads, ``transforms`` applies a data binding (offset, clipping,
channel re-mapping) to one chunk.
"""
