"""The chunk store: segment files of encoded chunks plus the ``Chunk`` index (see writer.py)."""
