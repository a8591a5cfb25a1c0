"""The SessionStore gRPC service (spec §7): a thin adapter over ``sessions_app.services``.

Each RPC translates its request (``translate``), calls the service layer with
the caller's access (``current_access()``, set by the auth interceptor) and
translates the result back. Service errors reach the client through the one
gRPC error interceptor (``rta_site.grpc_errors``).
"""

import logging

from django.db.models import prefetch_related_objects
from google.protobuf import empty_pb2
from rta.toolkit.api import session_service_pb2 as pb
from rta.toolkit.api import session_service_pb2_grpc as pb_grpc

from rta_core.access import current_access
from sessions_app.grpc import translate
from sessions_app.query.compiler import parse_query
from sessions_app.services import folders, listing, metamodel, updates

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SessionStore"].full_name
_EMPTY = empty_pb2.Empty()


class SessionStoreServicer(pb_grpc.SessionStoreServicer):
    # --- folders ----------------------------------------------------------------------------

    def GetSessionFolders(self, request, context):
        children = folders.child_folders(request.parent_identity, access=current_access())
        return pb.GetSessionFoldersResponse(folders=[translate.folder_message(f) for f in children])

    def PutSessionFolder(self, request, context):
        folders.put_folder(
            request.parent_identity, request.identity, request.label, request.description, access=current_access()
        )
        return _EMPTY

    def DeleteSessionFolders(self, request, context):
        folders.delete_folders(list(request.folder_identities), access=current_access())
        return _EMPTY

    # --- metamodel --------------------------------------------------------------------------

    def GetSessionMetamodel(self, request, context):
        model = metamodel.metamodel(
            request.folder_subtree or None, list(request.json_properties), access=current_access()
        )
        return pb.GetSessionMetamodelResponse(metamodel_json=translate.to_json(model))

    def QuerySessionMetamodel(self, request, context):
        summaries = metamodel.property_summaries(
            request.partial_match, request.folder_subtree or None, access=current_access()
        )
        return pb.QuerySessionMetamodelResponse(
            property_summaries=[translate.property_summary_message(s) for s in summaries]
        )

    # --- sessions ---------------------------------------------------------------------------

    def ListSessions(self, request, context):
        sessions = listing.list_sessions(
            query=parse_query(request.query),
            folder=request.folder_subtree or None,
            sorts=list(request.sorts),
            page_index=request.page_index,
            page_size=request.page_size or None,
            include_sub_sessions=request.include_sub_sessions,
            access=current_access(),
        )
        return pb.ListSessionsResponse(sessions=_session_messages(sessions, request.session_elements))

    def GetSession(self, request, context):
        session = listing.get_session(request.identity, access=current_access())
        return _session_messages([session], request.elements)[0]

    def CreateOrUpdateSession(self, request, context):
        updates.create_or_update_session(
            request.identity,
            translate.update_ops(request.updates),
            translate.create_args(request),
            sequence=request.sequence.value if request.HasField("sequence") else None,
            access=current_access(),
        )
        return _EMPTY

    def DeleteSessions(self, request, context):
        updates.delete_sessions(list(request.identities), access=current_access())
        return _EMPTY


def _session_messages(sessions, elements):
    """Session messages for loaded sessions, fetching what ``elements`` needs in batches."""
    related = translate.prefetches(elements)
    if related:
        prefetch_related_objects(sessions, *related)
    relations = {}
    if elements.json and sessions:
        relations = listing.related_sessions([s.identity for s in sessions], access=current_access())
    return [translate.session_message(s, elements, relations.get(s.identity)) for s in sessions]


def register(server):
    """Add the SessionStore servicer to ``server``; returns the service names it serves."""
    pb_grpc.add_SessionStoreServicer_to_server(SessionStoreServicer(), server)
    return [SERVICE_NAME]
