"""JSON error responses for plain Django views (DRF views go through ``rta_site.api_errors``)."""

from django.http import JsonResponse


def json_error(message, status_code):
    """A JSON ``{"error": message}`` response."""
    return JsonResponse({"error": message}, status=status_code)
