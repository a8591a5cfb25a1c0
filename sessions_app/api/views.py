"""REST adapters for the Session Service (spec §2–§6): parse, call the service layer, render."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from rta_core.errors import InvalidArgument, NotFound
from sessions_app.query.compiler import parse_query
from sessions_app.services import folders, listing, metamodel, rendering

PAGE_PARAMS = [
    OpenApiParameter("pageIndex", int, description="Page index, from 0."),
    OpenApiParameter("pageSize", int, description="Page size, from 0."),
    OpenApiParameter("folder", str, description="Folder sub-tree to list."),
    OpenApiParameter("sort", str, many=True, description="Sort directives `prop:asc|desc`, highest priority first."),
    OpenApiParameter("prop", str, many=True, description="Extra properties to include, e.g. `extDetails.CarSetup`."),
]


def _int_param(params, name):
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        # A JSON body may carry any type: 1.5 or true must not pass as 1.
        raise InvalidArgument(f"{name} must be an integer, got {raw!r}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be an integer, got {raw!r}") from None
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
        sessions = listing.list_sessions(
            query=parse_query(params.get("query")),
            folder=params.get("folder") or None,
            sorts=_list(params, "sort"),
            page_index=_int_param(params, "pageIndex"),
            page_size=_int_param(params, "pageSize"),
        )
        return Response({"sessions": rendering.sessions_json(sessions, props)})

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
        session = listing.get_session(identity)
        relations = listing.related_sessions([identity]).get(identity)
        return Response(rendering.session_json(session, _list(request.query_params, "prop"), relations))


class SessionFoldersView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, operation_id="get-session-folders")
    def get(self, request, parent=""):
        return Response(
            [
                {"identity": f.identity, "label": f.label, "description": f.description, "hasChildren": f.has_children}
                for f in folders.child_folders(parent)
            ]
        )


class RootSessionFoldersView(SessionFoldersView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, operation_id="get-root-session-folders")
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
        return Response(metamodel.metamodel(params.get("folder") or None, _list(params, "prop")))


class SessionMetamodelPropertiesView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("query", str), OpenApiParameter("folder", str)],
        responses={200: OpenApiTypes.OBJECT},
        operation_id="query-session-metamodel",
    )
    def get(self, request):
        params = request.query_params
        return Response(metamodel.property_summaries(params.get("query", ""), params.get("folder") or None))


class SessionDataBindingsView(APIView):
    """Internal: a session's data bindings, served only when RTA_EXPOSE_DATA_BINDINGS is on."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}, operation_id="get-data-bindings")
    def get(self, request, identity):
        if not settings.RTA_EXPOSE_DATA_BINDINGS:
            raise NotFound("data bindings are not exposed (set RTA_EXPOSE_DATA_BINDINGS=true)")
        session = listing.get_session(identity)
        return Response([rendering.data_binding_json(b) for b in session.data_bindings.all()])


class InfoView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, operation_id="get-info")
    def get(self, request):
        return Response(
            {
                "label": settings.RTA_SERVICE_LABEL,
                "description": settings.RTA_SERVICE_DESCRIPTION,
                "requiresAuthentication": False,
            }
        )
