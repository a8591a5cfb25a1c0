"""What a caller may do: the access a transport adapter derives from its credentials.

The adapters (REST middleware, WebSocket middleware, gRPC interceptor, all in
``rta_site.auth``) authenticate a caller and build an ``Access``; services take
it as a plain argument. ``folders`` carries the folder identities a token is
limited to (their sub-trees), or ``None`` when the caller is not
folder-restricted (auth off, service and administrator tokens); an empty
tuple sees nothing.

A gRPC call's access is also kept in a context variable for the call's
duration (set by the interceptor, in the call's thread): servicers read
``current_access()`` and pass it on, since they may not import ``rta_site``.
Code that runs outside a request (commands, the ingest, tests calling services
directly) has full access.
"""

from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Access:
    can_read: bool
    can_write: bool
    folders: tuple[str, ...] | None = None
    subject: str | None = None

    ANONYMOUS_FULL: ClassVar["Access"]  # auth off: anyone may do anything
    NOBODY: ClassVar["Access"]  # auth on, no credentials checked (open endpoints): nothing

    @property
    def folder_restricted(self):
        return self.folders is not None


Access.ANONYMOUS_FULL = Access(can_read=True, can_write=True, folders=None, subject=None)
Access.NOBODY = Access(can_read=False, can_write=False, folders=(), subject=None)

_current = ContextVar("rta_access", default=Access.ANONYMOUS_FULL)


def current_access():
    """The access of the gRPC call this thread is serving (full access outside any call)."""
    return _current.get()


def set_current_access(access):
    """Make ``access`` current; returns the token ``reset_current_access`` takes."""
    return _current.set(access)


def reset_current_access(token):
    try:
        _current.reset(token)
    except ValueError:
        # A streaming call's generator closed from another thread (or context): nothing to restore here.
        pass
