"""The hook through which apps above sessions_app add panels to the session change page.

sessions_app may not import the apps built on it, yet its session page shows what they hold (data_app:
the data a session stores, and a plot of it). Such an app registers a ``SessionPanel`` from its own
``admin`` module, which Django's admin autodiscovery imports at start-up; the session admin asks
``registered()`` each time it builds a change page or its URLs, so the order of import does not matter.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionPanel:
    """A fieldset of the session change page with one read-only field, and the URLs that field links to.

    ``render(session)`` gives the field's safe HTML; it is the read-only field itself, so its ``__name__``
    names the form row (``field-<name>``). ``urls(model_admin)`` gives URL patterns added before the
    session admin's own (whose ``<path:object_id>/`` would swallow them); ``classes`` are the fieldset's
    CSS classes, beside ``rta-panel`` (full width, no label).
    """

    title: str
    render: Callable
    urls: Callable = None
    classes: tuple = ()


_PANELS = {}


def register(panel):
    """Add ``panel`` after those registered before it; registering a panel of the same title replaces it."""
    _PANELS[panel.title] = panel


def registered():
    return list(_PANELS.values())
