"""The HTTP service: face match, liveness, the applicant graph and decisions over HTTP.

An optional extra (``pip install 'kyc[service]'``: FastAPI, uvicorn, python-multipart).
Importing this package needs none of them; :func:`create_app` raises
:class:`~kyc.errors.ConfigError` saying what to install when they are missing.

>>> from kyc.service import ServiceConfig
>>> cfg = ServiceConfig(tokens=("a-long-random-api-token-1",), secret=b"0123456789abcdef!")
>>> cfg.max_body_bytes
16777216

Run it with ``kyc serve`` (see :mod:`kyc._cli.serve`) or any ASGI server::

    from kyc.service import ServiceConfig, create_app
    app = create_app(ServiceConfig(tokens=(token,), secret=secret, graph_store="graph.db"))
"""

from __future__ import annotations

from kyc.service.app import ServiceConfig, create_app

__all__ = ["ServiceConfig", "create_app"]
