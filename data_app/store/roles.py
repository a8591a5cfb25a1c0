"""Read and write roles (``RTA_ENABLE_DATA_WRITER`` / ``RTA_ENABLE_DATA_READER``, the toolkit's EnableWrite/EnableRead).

Scale-out deployments run writer instances and reader instances behind a load
balancer against one database, Redis and bucket; an instance refuses what its
role excludes with FAILED_PRECONDITION (gRPC) / 503 (HTTP, so a load balancer
tries another instance), before anything is read or acknowledged.
"""

import grpc
from django.conf import settings

from rta_core.errors import ServiceError


class RoleDisabled(ServiceError):
    http_status = 503
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


def check_writer():
    if not getattr(settings, "RTA_ENABLE_DATA_WRITER", True):
        raise RoleDisabled("this instance does not write data (RTA_ENABLE_DATA_WRITER=false): use a writer instance")


def check_reader():
    if not getattr(settings, "RTA_ENABLE_DATA_READER", True):
        raise RoleDisabled("this instance does not read data (RTA_ENABLE_DATA_READER=false): use a reader instance")
