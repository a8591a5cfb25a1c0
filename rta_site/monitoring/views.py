"""Service endpoints outside /rta/v2: product info, health and Prometheus metrics."""

import functools

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rta_site import __version__
from rta_site.monitoring.health import run_checks

READ_METHODS = ("GET", "HEAD")


def read_only(view):
    """GET and HEAD only: any other method (TRACE, POST...) gets a JSON 405 naming the allowed ones."""

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if request.method not in READ_METHODS:
            allowed = ", ".join(READ_METHODS)
            response = JsonResponse({"error": f"method {request.method} is not allowed here ({allowed})"}, status=405)
            response["Allow"] = allowed
            return response
        return view(request, *args, **kwargs)

    # Exempt, so that a POST gets the 405 rather than a CSRF failure page.
    return csrf_exempt(guarded)


def enabled_services():
    services = ["rest", "websocket"]
    if settings.RTA_ENABLE_GRPC:
        services += ["grpc"]
    return services


@read_only
def index(request):
    return JsonResponse(
        {
            "product": "RTA Server",
            "version": __version__,
            "label": settings.RTA_SERVICE_LABEL,
            "services": enabled_services(),
            "api": "/rta/v2",
        }
    )


@read_only
def health(request):
    failures = [f"{name}: {error}" for name, error in run_checks() if error]
    if failures:
        return HttpResponse("Unhealthy\n" + "\n".join(failures) + "\n", status=503, content_type="text/plain")
    return HttpResponse("Healthy", content_type="text/plain")


@read_only
def metrics(request):
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


def not_found(request, exception=None):
    return JsonResponse({"error": f"no such resource: {request.path}"}, status=404)


def server_error(request):
    return JsonResponse({"error": "internal server error"}, status=500)
