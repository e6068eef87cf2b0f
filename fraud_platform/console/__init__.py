"""The fraud analyst console: alert queue, transaction search, verdicts and an overview, served by
the decision API process (mounted under ``/console``) over the API's own key ring and decision log.

Server-rendered (Jinja2) with a few lines of vanilla JS for partial refresh: no front-end build,
no CDN. Verdicts are kept in the decision log's database and published as labels
(``fraud_platform.console.labels``) so the lake, training and online features learn from them.
"""
