"""Service endpoints outside /rta/v2: product info, health and Prometheus metrics."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rta_site import __version__
from rta_site.monitoring.health import run_checks


def enabled_services():
    services = ["rest", "websocket"]
    if settings.RTA_ENABLE_GRPC:
        services += ["grpc"]
    return services


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


def health(request):
    failures = [f"{name}: {error}" for name, error in run_checks() if error]
    if failures:
        return HttpResponse("Unhealthy\n" + "\n".join(failures) + "\n", status=503, content_type="text/plain")
    return HttpResponse("Healthy", content_type="text/plain")


def metrics(request):
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


def not_found(request, exception=None):
    return JsonResponse({"error": f"no such resource: {request.path}"}, status=404)


def server_error(request):
    return JsonResponse({"error": "internal server error"}, status=500)
