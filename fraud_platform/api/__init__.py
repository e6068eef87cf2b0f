"""The decision API: one transaction decided synchronously, with reasons, from the same validation,
features, champion and thresholds as the streaming scorer. A service: imports the domain, ``ml`` and
``infra`` packages, never Dagster (``fraud_platform_tests/api/test_deployable.py`` checks it)."""
