"""REST adapters for the Session Service (spec §2–§6): parse, call the service layer, render.

Every call passes the caller's access (``request.rta_access``, set by
``rta_site.auth.middleware.BearerTokenMiddleware``) to the services, which restrict to its folders.
"""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from rta_core.errors import InvalidArgument, NotFound, excerpt
from sessions_app.query.compiler import parse_query
from sessions_app.services import folders, listing, metamodel, rendering

PAGE_PARAMS = [
    OpenApiParameter("pageIndex", int, description="Page index, from 0."),
    OpenApiParameter("pageSize", int, description="Page size, from 0."),
    OpenApiParameter("folder", str, description="Folder sub-tree to list."),
    OpenApiParameter("sort", str, many=True, description="Sort directives `prop:asc|desc`, highest priority first."),
    OpenApiParameter("prop", str, many=True, description="Extra properties to include, e.g. `extDetails.CarSetup`."),
]


# OpenAPI descriptions of the array answers (the views render them directly).
FOLDERS = inline_serializer(
    "SessionFolder",
    {
        "identity": serializers.CharField(),
        "label": serializers.CharField(allow_blank=True),
        "description": serializers.CharField(allow_blank=True),
        "hasChildren": serializers.BooleanField(),
    },
    many=True,
)
PROPERTIES = inline_serializer(
    "SessionProperty",
    {
        "id": serializers.CharField(),
        "label": serializers.CharField(allow_blank=True),
        "description": serializers.CharField(required=False, allow_blank=True),
    },
    many=True,
)


def _int_param(params, name):
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        # A JSON body may carry any type: 1.5 or true must not pass as 1.
        raise InvalidArgument(f"{name} must be an integer, got {excerpt(raw)}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be an integer, got {excerpt(raw)}") from None
    if value < 0:
        raise InvalidArgument(f"{name} must not be negative")
    return value


def _list(params, name):
    if hasattr(params, "getlist"):
        return params.getlist(name)
    value = params.get(name)  # a JSON body: one value or an array of them
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, list) else [value]


class SessionListView(APIView):
    """GET lists sessions; POST (form-encoded) also takes a `query`."""

    def _page(self, params):
        props = _list(params, "prop")
        access = self.request.rta_access
        sessions = listing.list_sessions(
            query=parse_query(params.get("query")),
            folder=params.get("folder") or None,
            sorts=_list(params, "sort"),
            page_index=_int_param(params, "pageIndex"),
            page_size=_int_param(params, "pageSize"),
            access=access,
        )
        relations = listing.related_sessions([s.identity for s in sessions], access=access)
        return Response({"sessions": [rendering.session_json(s, props, relations.get(s.identity)) for s in sessions]})

    @extend_schema(parameters=PAGE_PARAMS, responses={200: OpenApiTypes.OBJECT}, operation_id="list-sessions")
    def get(self, request):
        return self._page(request.query_params)

    @extend_schema(
        request={"application/x-www-form-urlencoded": OpenApiTypes.OBJECT},
        responses={200: OpenApiTypes.OBJECT},
        operation_id="query-sessions",
        description="Form fields pageIndex, pageSize, folder, sort (repeatable), query (JSON dialect), prop (repeatable).",
    )
    def post(self, request):
        if not hasattr(request.data, "get"):
            raise InvalidArgument("the request body must hold form fields (or one JSON object)")
        return self._page(request.data)


class SessionDetailView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("prop", str, many=True)],
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
        operation_id="get-session",
    )
    def get(self, request, identity):
        session = listing.get_session(identity, access=request.rta_access)
        relations = listing.related_sessions([identity], access=request.rta_access).get(identity)
        return Response(rendering.session_json(session, _list(request.query_params, "prop"), relations))


class SessionFoldersView(APIView):
    @extend_schema(responses={200: FOLDERS}, operation_id="get-session-folders")
    def get(self, request, parent=""):
        return Response(
            [
                {"identity": f.identity, "label": f.label, "description": f.description, "hasChildren": f.has_children}
                for f in folders.child_folders(parent, access=request.rta_access)
            ]
        )


class RootSessionFoldersView(SessionFoldersView):
    @extend_schema(responses={200: FOLDERS}, operation_id="get-root-session-folders")
    def get(self, request):
        return super().get(request, "")


class SessionMetamodelView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("folder", str), OpenApiParameter("prop", str, many=True)],
        responses={200: OpenApiTypes.OBJECT},
        operation_id="get-session-metamodel",
    )
    def get(self, request):
        params = request.query_params
        model = metamodel.metamodel(params.get("folder") or None, _list(params, "prop"), access=request.rta_access)
        return Response(model)


class SessionMetamodelPropertiesView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("query", str), OpenApiParameter("folder", str)],
        responses={200: PROPERTIES},
        operation_id="query-session-metamodel",
    )
    def get(self, request):
        params = request.query_params
        summaries = metamodel.property_summaries(
            params.get("query", ""), params.get("folder") or None, access=request.rta_access
        )
        return Response(summaries)


class SessionDataBindingsView(APIView):
    """Internal: a session's data bindings, served only when RTA_EXPOSE_DATA_BINDINGS is on."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}, operation_id="get-data-bindings")
    def get(self, request, identity):
        if not settings.RTA_EXPOSE_DATA_BINDINGS:
            raise NotFound("data bindings are not exposed (set RTA_EXPOSE_DATA_BINDINGS=true)")
        session = listing.get_session(identity, access=request.rta_access)
        return Response([rendering.data_binding_json(b) for b in session.data_bindings.all()])


class InfoView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, operation_id="get-info")
    def get(self, request):
        return Response(
            {
                "label": settings.RTA_SERVICE_LABEL,
                "description": settings.RTA_SERVICE_DESCRIPTION,
                "requiresAuthentication": settings.RTA_AUTH_ENABLED,
            }
        )
