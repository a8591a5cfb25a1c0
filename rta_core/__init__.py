"""The kernel every app shares: errors, time, identities.

It imports no app and nothing above Django (no DRF, no Channels), so any
service layer may depend on it; an import-linter contract keeps it so.
"""
