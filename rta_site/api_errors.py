"""How service errors reach REST clients: one DRF exception handler.

A ``ServiceError`` answers its own ``http_status`` with ``{"error": message}``;
DRF's own exceptions keep their status with the same body shape; anything
else is logged and answered 500.
"""

import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from rta_core.errors import ServiceError

log = logging.getLogger(__name__)


def json_exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response({"error": exc.message}, status=exc.http_status)
    if isinstance(exc, RequestDataTooBig):  # Django's own body limit (DATA_UPLOAD_MAX_MEMORY_SIZE)
        return Response({"error": "the request body is over this endpoint's limit"}, status=413)
    if isinstance(exc, SuspiciousOperation):  # e.g. more form fields than DATA_UPLOAD_MAX_NUMBER_FIELDS
        return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    response = exception_handler(exc, context)
    if response is not None:
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        response.data = {"error": str(detail) if detail is not None else response.data}
        return response
    log.exception("unhandled error in %s", context.get("view"))
    return Response({"error": "internal server error"}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
