"""Demo sessions for a new installation: a simulated car on a fictional circuit (see ``car``),
its configuration (``config``) and the loader that stores them (``loader``)."""

from data_app.demo.loader import FOLDER, MAX_SESSIONS, STEPS, load_demo, remove_demo, session_identity

__all__ = ["FOLDER", "MAX_SESSIONS", "STEPS", "load_demo", "remove_demo", "session_identity"]
