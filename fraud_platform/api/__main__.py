"""``python -m fraud_platform.api``: the decision API on uvicorn (same as ``fraud-platform serve``)."""

from fraud_platform.api.server import serve

serve()
