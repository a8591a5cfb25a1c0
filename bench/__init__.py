"""Benchmarks of the RTA server, run by ``make bench`` (``python -m bench``).

Every module here exposing ``main()`` is one benchmark; they run against a
separate PostgreSQL database (``rta_bench``) so the data RTA_DATABASE_URL
names is never touched. Results go to ``bench/results/<module>.json``.
"""
