"""Signals of the Session Service, for apps above it (as ``django.contrib.auth.signals`` does).

A lower app never imports a higher one: data_app connects its live-stream
receivers to these in ``DataAppConfig.ready``. Both are sent once the
transaction that made the change has committed.
"""

import django.dispatch

# A session was created or changed; ``session`` is the saved model instance.
session_changed = django.dispatch.Signal()

# Sessions were deleted; ``identities`` lists them.
sessions_deleted = django.dispatch.Signal()
