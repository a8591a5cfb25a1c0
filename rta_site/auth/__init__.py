"""Authentication and transport security (spec §15): bearer tokens on every interface, the embedded
authority, TLS. See docs/security.md.

Kept free of imports: ``rta_site.settings`` reads ``rta_site.auth.keys`` before Django is set up.
"""
