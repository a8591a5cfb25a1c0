"""Errors shared by every app, and how they reach REST clients.

Service layers raise ``InvalidArgument`` / ``NotFound``; the REST exception
handler turns them into 400 / 404 with a JSON ``{"error": ...}`` body and the
gRPC adapters into INVALID_ARGUMENT / NOT_FOUND.
"""

import logging

from django.http import JsonResponse
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

log = logging.getLogger(__name__)


class ServiceError(Exception):
    http_status = 400

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    http_status = 400


class NotFound(ServiceError):
    http_status = 404


class TooLarge(ServiceError):
    http_status = 413


class NotAcceptable(ServiceError):
    http_status = 406


def json_error(message, status_code):
    return JsonResponse({"error": message}, status=status_code)


def json_exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response({"error": exc.message}, status=exc.http_status)
    response = exception_handler(exc, context)
    if response is not None:
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        response.data = {"error": str(detail) if detail is not None else response.data}
        return response
    log.exception("unhandled error in %s", context.get("view"))
    return Response({"error": "internal server error"}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
