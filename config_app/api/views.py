"""REST adapter of the Config Service: HEAD and GET ``/rta/v2/configs/{identifier}``.

Configs never change once published, so responses carry a strong ETag (the
SHA-256 of the bytes) and year-long ``immutable`` cache headers; the body is
streamed from storage, never read into memory.
"""

from django.http import FileResponse, HttpResponse
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from config_app.api.negotiation import accepts
from config_app.services import store
from rta_core.errors import NotAcceptable, ServiceError

CACHE_CONTROL = "public, max-age=31536000, immutable"


class ConfigFileResponse(FileResponse):
    block_size = 256 * 1024


class ErrorsAsJson(BaseContentNegotiation):
    """Errors are always rendered as JSON; the config itself is negotiated by the view."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _etag(config):
    return f'"{config.sha256}"'


def _not_modified(request, etag):
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    tags = parse_etags(header)
    # Weak comparison (RFC 9110 §13.1.2): W/"x" matches "x".
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def _headers(response, config):
    response.headers["ETag"] = _etag(config)
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Vary"] = "Accept"
    return response


IDENTIFIER = OpenApiParameter(
    "identifier",
    str,
    OpenApiParameter.PATH,
    description="Config identifier; any text (percent-encode reserved characters, including '/').",
)


class ConfigView(APIView):
    content_negotiation_class = ErrorsAsJson

    @extend_schema(
        operation_id="get-config",
        parameters=[IDENTIFIER],
        responses={
            # A JSON config is a JSON document (clients parse it as one); an FFC config is bytes.
            (200, media): OpenApiResponse(
                OpenApiTypes.ANY if media == store.JSON_CONTENT_TYPE else OpenApiTypes.BINARY,
                description="The config as published.",
            )
            for media in store.CONTENT_TYPES
        }
        | {304: None, 404: OpenApiTypes.OBJECT, 406: OpenApiTypes.OBJECT},
        description=(
            "The config in its stored media type (JSON or FFC); 406 when Accept admits neither. "
            "HEAD (has-config) answers the same status and headers without a body."
        ),
    )
    def get(self, request, identifier):
        return self._respond(request, identifier, head=False)

    # drf-spectacular leaves HEAD out of the document; the GET description covers it.
    @extend_schema(operation_id="has-config", parameters=[IDENTIFIER], responses={200: None, 404: None})
    def head(self, request, identifier):
        return self._respond(request, identifier, head=True)

    def _respond(self, request, identifier, head):
        config = store.get_config(identifier)
        if not accepts(request.headers.get("Accept", ""), config.content_type):
            raise NotAcceptable(
                f"config {store.shown(identifier)} is available as {config.content_type} only, "
                f"which the Accept header ({request.headers.get('Accept')}) does not admit"
            )
        if _not_modified(request, _etag(config)):
            return _headers(HttpResponse(status=304), config)
        if head:
            response = HttpResponse(content_type=config.content_type)
            response.headers["Content-Length"] = str(config.size)
            return _headers(response, config)
        response = ConfigFileResponse(store.open_config(config), content_type=config.content_type)
        response.headers.pop("Content-Disposition", None)  # the storage file name is not the client's business
        response.headers["Content-Length"] = str(config.size)
        return _headers(response, config)

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if self.request.method == "HEAD" and isinstance(exc, ServiceError):
            # HEAD answers with the status alone.
            response = HttpResponse(status=response.status_code)
        return response
