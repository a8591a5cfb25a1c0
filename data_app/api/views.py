"""REST data endpoints: ``application/vnd.mat.protobuf+chunked`` served from stored chunk bytes."""
from django.http import StreamingHttpResponse
from django.views.decorators.http import require_GET

from data_app import wire
from data_app.channels import parse_channels
from data_app.store import reader
from rta_site.errors import InvalidArgument, ServiceError, json_error


def _time_param(request, name):
    value = request.GET.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer number of nanoseconds") from None


def _respond(request, identity, kind, channels_expression):
    from sessions_app.models import Session

    try:
        channels = parse_channels(channels_expression) if channels_expression is not None else None
        start, end = _time_param(request, "start"), _time_param(request, "end")
        if not Session.objects.filter(identity=identity).exists():
            return json_error(f"session {identity!r} not found", 404)
        refs = reader.find_chunks(identity, kind, channels, start, end)
    except ServiceError as exc:
        return json_error(exc.message, exc.http_status)
    response = StreamingHttpResponse(reader.wire_stream(refs), content_type=wire.MEDIA_TYPE)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def channel_data(request, identity, kind, channels):
    return _respond(request, identity, kind, channels)


@require_GET
def events(request, identity):
    return _respond(request, identity, "events", None)
