"""HTTP content negotiation for configs: does an Accept header admit a media type?"""


def _quality(params):
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value.strip())))
            except ValueError:
                return 1.0
    return 1.0


def accepts(accept, media_type):
    """Whether ``accept`` (an Accept header value) admits ``media_type``.

    The most specific matching range decides (``type/subtype`` over ``type/*``
    over ``*/*``), and ``q=0`` excludes. A missing or empty header admits anything.
    """
    if not accept or not accept.strip():
        return True
    media_type = media_type.lower()
    main_type = media_type.split("/", 1)[0]
    best = None  # (specificity, quality)
    for part in accept.split(","):
        media_range, *params = part.split(";")
        media_range = media_range.strip().lower()
        if media_range == media_type:
            specificity = 2
        elif media_range == f"{main_type}/*":
            specificity = 1
        elif media_range in ("*/*", "*"):
            specificity = 0
        else:
            continue
        candidate = (specificity, _quality(params))
        if best is None or candidate[0] > best[0] or (candidate[0] == best[0] and candidate[1] > best[1]):
            best = candidate
    return best is not None and best[1] > 0
