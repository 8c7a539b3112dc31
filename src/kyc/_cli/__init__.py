"""Sub-command modules of the ``kyc`` CLI (private; see :mod:`kyc.cli`)."""
