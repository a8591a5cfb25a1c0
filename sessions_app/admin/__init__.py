"""Django admin of the Session Service: sessions (with their markers, bindings, folders and refs) and folders.

Every change goes through the service layer, never straight to the models; the forms show the
service's own errors. Modules:

* ``sessions``: the session list and change page (``SessionAdmin``);
* ``inlines``: the change page's inline rows; ``actions``: the list's actions;
* ``folders``: the folder tree (``FolderAdmin``);
* ``forms``: the forms, which turn edits into service ops and service errors into form errors;
* ``display``: the pictures (state badge, timeline);
* ``panels``: the hook through which apps above this one add panels to the session page (data_app's
  data overview and plot), since sessions_app may not import them.
"""

from sessions_app.admin import folders, sessions  # noqa: F401  (registers the model admins)
