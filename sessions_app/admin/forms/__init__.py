"""Forms of the Session Service admin.

The forms parse what was typed (JSON, numbers, folder choices) and turn what was edited into the
``(op, argument)`` list of ``create_or_update_session``; they do not judge it. The service does: each
form dry-runs its ops through the service (``updates.check_session_update``, ``folders.check_folder``)
and shows the service's error beside the field, or inline row, the error names (``service_errors``).

* ``fields``: the JSON and folder-choice fields;
* ``session``: the session form;
* ``rows``: the inline rows (markers, bindings, folder links, refs) and their formsets;
* ``folders``: the folder form and the folder box of the action bar.
"""
