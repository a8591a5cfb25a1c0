#!/usr/bin/env python
"""Django's command-line utility for the RTA server."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rta_site.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A malformed RTA_* variable (rta_site.settings): one line naming it is all the operator needs.
        sys.stderr.write(f"{os.path.basename(sys.argv[0])}: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
