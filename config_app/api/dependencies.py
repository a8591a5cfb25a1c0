"""REST adapter of the Advanced Streams dependency service (``/api/dependencies``).

- ``GET``/``HEAD /api/dependencies/{type}/{id}``: the JSON document (404 if absent), with a strong
  ``ETag`` (SHA-256 of its canonical JSON) and immutable caching.
- ``PUT /api/dependencies/{type}/{id}`` (JSON body): publish under that id; 201 when stored, 200 when
  the same document was there already, 409 when the id holds a different one.
- ``POST /api/dependencies/{type}`` (JSON body): publish under the document's content hash; 201/200
  as for PUT. Both answer ``{"type", "id"}`` with a ``Location``.
"""

import orjson
from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from config_app.services import dependencies
from rta_core.errors import ServiceError, TooLarge

CACHE_CONTROL = "public, max-age=31536000, immutable"
TYPE = OpenApiParameter("dependency_type", str, OpenApiParameter.PATH, description="Dependency type, e.g. dataFormat.")
ID = OpenApiParameter("dependency_id", str, OpenApiParameter.PATH, description="Dependency id (no '/').")


def _read_body(request):
    """The request body, refused (413) beyond RTA_DEPENDENCY_MAX_BYTES without reading it all."""
    limit = getattr(settings, "RTA_DEPENDENCY_MAX_BYTES", 32 * 1024 * 1024)
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"dependency document is {declared} bytes; the limit is {limit}")
    data = request.stream.read(limit + 1) if request.stream is not None else b""
    if len(data) > limit:
        raise TooLarge(f"dependency document is over the {limit}-byte limit")
    return data


def _published(request, dependency_type, dependency_id, created):
    location = reverse("dependency", kwargs={"dependency_type": dependency_type, "dependency_id": dependency_id})
    response = Response({"type": dependency_type, "id": dependency_id}, status=201 if created else 200)
    response["Location"] = request.build_absolute_uri(location)
    return response


class DependencyView(APIView):
    parser_classes = []  # the body is read (and size-checked) by the view

    @extend_schema(
        operation_id="get-dependency",
        parameters=[TYPE, ID],
        responses={200: OpenApiTypes.OBJECT, 304: None, 404: OpenApiTypes.OBJECT},
    )
    def get(self, request, dependency_type, dependency_id):
        return self._respond(request, dependency_type, dependency_id, head=False)

    @extend_schema(operation_id="has-dependency", parameters=[TYPE, ID], responses={200: None, 404: None})
    def head(self, request, dependency_type, dependency_id):
        return self._respond(request, dependency_type, dependency_id, head=True)

    @extend_schema(
        operation_id="put-dependency",
        parameters=[TYPE, ID],
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiTypes.OBJECT,
            201: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            409: OpenApiTypes.OBJECT,
            413: OpenApiTypes.OBJECT,
        },
    )
    def put(self, request, dependency_type, dependency_id):
        document = dependencies.parse_document(_read_body(request))
        dependency_id, created = dependencies.publish(dependency_type, document, dependency_id)
        return _published(request, dependency_type, dependency_id, created)

    def _respond(self, request, dependency_type, dependency_id, head):
        row = dependencies.get(dependency_type, dependency_id)
        etag = f'"{row.sha256}"'
        header = request.headers.get("If-None-Match")
        if header and ("*" in (tags := parse_etags(header)) or any(t.removeprefix("W/") == etag for t in tags)):
            response = HttpResponse(status=304)
        else:
            body = b"" if head else orjson.dumps(row.document)
            response = HttpResponse(body, content_type="application/json")
            if head:
                response["Content-Length"] = str(len(orjson.dumps(row.document)))
        response["ETag"] = etag
        response["Cache-Control"] = CACHE_CONTROL
        return response

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if self.request.method == "HEAD" and isinstance(exc, ServiceError):
            response = HttpResponse(status=response.status_code)
        return response


class DependencyCollectionView(APIView):
    parser_classes = []

    @extend_schema(
        operation_id="post-dependency",
        parameters=[TYPE],
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiTypes.OBJECT,
            201: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            413: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request, dependency_type):
        document = dependencies.parse_document(_read_body(request))
        dependency_id, created = dependencies.publish(dependency_type, document)
        return _published(request, dependency_type, dependency_id, created)
